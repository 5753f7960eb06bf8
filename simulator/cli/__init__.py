"""The command line: ``fedfleet run|resume|validate|sweep|profiles|serve|dashboard``."""
