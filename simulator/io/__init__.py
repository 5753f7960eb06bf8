"""Run files: the recorder (parquet tables), checkpoints, the runs index, safe unpickling."""
