"""Your own data (numpy, pandas/pyarrow, PIL, ``datasets``: each imported only when used).

Three datasets read ``data.path`` (docs/bring-your-own.md):

* ``tabular``: a CSV or parquet file; a label column (``data.params.label``), feature columns
  (``data.params.features``, default every numeric column but the label and the client column),
  standardised with the training rows' mean and deviation (``data.params.standardize``);
* ``images``: an ``.npz`` with arrays ``x`` [n, H, W], [n, H, W, C] or [n, C, H, W] (or [n, d]
  vectors) and ``y`` [n] (optionally ``x_test``/``y_test``), or a folder with one subfolder of
  images per class (read with PIL, resized to ``data.params.image_size``);
* ``hf``: a Hugging Face dataset saved with ``save_to_disk`` (a ``Dataset`` or a
  ``DatasetDict`` whose ``data.params.split`` trains and ``test_split`` tests); an image column
  (``datasets.Image``) or numeric columns as features.

Labels are mapped to 0..K-1 in sorted order (strings allowed). The held-out test set is
``data.test_path`` (the same format), the dataset's own test split, or a random
``data.test_fraction`` of the rows. Clients:

* ``partition: natural`` with ``data.params.client_column``: one client per distinct id, each
  holding its own rows (a ``test_fraction`` of each client's rows held out unless a test file or
  split is given); ``population.size`` may not exceed the ids (the clients with the most rows
  are kept when it is smaller);
* any other partitioner (``iid``, ``dirichlet``, ``shards``, a plugin's): clients sample their
  shards from the training rows with the partitioner's label mix, as ``digits`` does, sized by
  ``data.size_distribution`` (log-normal or power law) around ``data.samples_per_client``.

Images are flattened to feature vectors (an MLP trains on them as they are); ``input_shape``
``(C, H, W)`` tells the torch model kinds (cnn, resnet18, mobilenet_v2, custom) how to reshape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from simulator import InputError
from simulator.config.base import Strict
from simulator.core import rng as rngmod
from simulator.data.base import PooledDataset
from simulator.data.partition import partition_spec
from simulator.data.sizes import scenario_sizes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class FileParams(Strict):
    """``data.params`` of the tabular, images and hf datasets."""

    label: str = Field("label", min_length=1, description="label column (tabular, hf)")
    features: tuple[str, ...] | None = Field(None, description=(
        "feature columns (tabular, hf); default: every numeric column but label and "
        "client_column"))
    client_column: str | None = Field(None, description=(
        "column of client ids: one client per id with partition: natural"))
    standardize: bool = Field(True, description=(
        "tabular, hf tables: scale features to mean 0, std 1 (the training rows' statistics)"))
    image_column: str | None = Field(None, description=(
        "hf: the image column (default: the first datasets.Image column, if any)"))
    image_size: tuple[int, int] | None = Field(None, description=(
        "images folder / hf images: resize to [height, width] (default: the first image's)"))
    grayscale: bool = Field(False, description="images folder / hf images: one channel")
    channels_last: bool | None = Field(None, description=(
        "npz: x is [n, H, W, C] (true) or [n, C, H, W] (false); default: guessed"))
    split: str = Field("train", description="hf DatasetDict: the split clients train on")
    test_split: str | None = Field(None, description=(
        "hf DatasetDict: the held-out split (default: 'test' when present)"))


@dataclass
class Arrays:
    """A labelled table read from a file: features [n, d] float32, labels [n] (raw values),
    client ids [n] or None, and the shape one sample has."""

    x: np.ndarray
    y: np.ndarray
    clients: np.ndarray | None
    input_shape: tuple[int, ...]


# --- readers --------------------------------------------------------------------------------------
def _frame(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt") or suffix == "":
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (OSError, ValueError) as exc:
        why = (str(exc).splitlines() or [""])[0][:200]
        raise InputError("data.path", f"cannot read '{path}' ({why})") from None
    raise InputError("data.path", f"'{path}': tabular data is .csv, .tsv or .parquet")


def table_arrays(df: Any, p: FileParams, where: str = "data.path") -> Arrays:
    """Features, labels and client ids from a data frame (columns named by ``p``)."""
    cols = [str(c) for c in df.columns]
    df.columns = cols
    if p.label not in cols:
        raise InputError("data.params.label", f"no column '{p.label}' in {where} (columns: "
                         f"{', '.join(cols[:20])})")
    if p.client_column is not None and p.client_column not in cols:
        raise InputError("data.params.client_column", f"no column '{p.client_column}' in "
                         f"{where} (columns: {', '.join(cols[:20])})")
    skip = {p.label, p.client_column}
    if p.features is not None:
        missing = [f for f in p.features if f not in cols]
        if missing:
            raise InputError("data.params.features", f"no column {missing[0]!r} in {where}")
        feats = list(p.features)
    else:
        feats = [c for c in cols if c not in skip and df[c].dtype.kind in "biuf"]
    if not feats:
        raise InputError("data.params.features", f"{where} has no numeric feature columns")
    bad = [c for c in feats if df[c].dtype.kind not in "biuf"]
    if bad:
        raise InputError("data.params.features", f"column '{bad[0]}' is not numeric (encode "
                         "it, or leave it out of data.params.features)")
    x = df[feats].to_numpy(dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError("data.path", f"{where} has missing or infinite feature values "
                         "(fill or drop them first)")
    y = df[p.label].to_numpy()
    if df[p.label].isna().any():
        raise InputError("data.params.label", f"column '{p.label}' has missing labels")
    clients = df[p.client_column].astype(str).to_numpy() if p.client_column else None
    return Arrays(x, y, clients, (x.shape[1],))


def _image_array(x: np.ndarray, channels_last: bool | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """[n, ...] images -> flat float32 [n, C*H*W] in [0, 1] for integers, and (C, H, W)."""
    if x.ndim == 2:
        out = x.astype(np.float32)
        return out, (x.shape[1],)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        last = channels_last if channels_last is not None else (
            x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4))
        if last:
            x = np.transpose(x, (0, 3, 1, 2))
    else:
        raise InputError("data.path", f"images must be [n, H, W], [n, H, W, C] or [n, C, H, W] "
                         f"(got {x.ndim} dimensions)")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    out = (x.astype(np.float32) / np.float32(scale)).reshape(len(x), -1)
    return out, tuple(int(v) for v in x.shape[1:])


def npz_arrays(path: Path, p: FileParams) -> tuple[Arrays, Arrays | None]:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError("data.path", f"cannot read '{path}' as .npz ({exc})") from None
    with z:
        if "x" not in z or "y" not in z:
            raise InputError("data.path", f"'{path}' needs arrays 'x' and 'y' (has: "
                             f"{', '.join(z.files)})")
        out: list[Arrays | None] = []
        for kx, ky in (("x", "y"), ("x_test", "y_test")):
            if kx not in z:
                out.append(None)
                continue
            x, shape = _image_array(np.asarray(z[kx]), p.channels_last)
            y = np.asarray(z[ky]).reshape(-1)
            if len(y) != len(x):
                raise InputError("data.path", f"'{path}': {kx} has {len(x)} rows, {ky} {len(y)}")
            out.append(Arrays(x, y, None, shape))
    assert out[0] is not None
    return out[0], out[1]


def _pil_images(images: list[Any], p: FileParams) -> tuple[np.ndarray, tuple[int, ...]]:
    mode = "L" if p.grayscale else "RGB"
    size = None if p.image_size is None else (int(p.image_size[1]), int(p.image_size[0]))
    arrs = []
    for img in images:
        img = img.convert(mode)
        if size is None:
            size = img.size
        if img.size != size:
            img = img.resize(size)
        arrs.append(np.asarray(img))
    x = np.stack(arrs)
    return _image_array(x if x.ndim == 4 else x, True if x.ndim == 4 else None)


def folder_arrays(path: Path, p: FileParams) -> Arrays:
    try:
        from PIL import Image
    except ImportError:
        raise InputError("data.path", "reading a folder of images needs Pillow (pip install "
                         "pillow), or give an .npz with x and y") from None
    classes = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise InputError("data.path", f"'{path}' has no class subfolders (one folder of images "
                         "per class)")
    images, labels = [], []
    for c in classes:
        for f in sorted(c.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    with Image.open(f) as im:
                        im.load()
                        images.append(im.copy())
                except OSError as exc:
                    raise InputError("data.path", f"cannot read image '{f}' ({exc})") from None
                labels.append(c.name)
    if not images:
        raise InputError("data.path", f"no images ({', '.join(IMAGE_SUFFIXES)}) under '{path}'")
    x, shape = _pil_images(images, p)
    return Arrays(x, np.asarray(labels), None, shape)


def hf_arrays(path: Path, p: FileParams) -> tuple[Arrays, Arrays | None]:
    try:
        import datasets
    except ImportError:
        raise InputError("data.dataset", "'hf' needs the datasets package (pip install "
                         "datasets)") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        why = (str(exc).splitlines() or [""])[0][:200]
        raise InputError("data.path", f"'{path}' is not a dataset saved with save_to_disk "
                         f"({why})") from None
    test = None
    if isinstance(ds, datasets.DatasetDict):
        if p.split not in ds:
            raise InputError("data.params.split", f"no split '{p.split}' (has: "
                             f"{', '.join(ds)})")
        want = p.test_split or ("test" if "test" in ds else None)
        if want is not None and want not in ds:
            raise InputError("data.params.test_split", f"no split '{want}' (has: "
                             f"{', '.join(ds)})")
        test = ds[want] if want is not None else None
        ds = ds[p.split]
    elif p.test_split is not None:
        raise InputError("data.params.test_split", "the saved dataset has no splits")
    return _hf_table(ds, p), (_hf_table(test, p) if test is not None else None)


def _hf_table(ds: Any, p: FileParams) -> Arrays:
    import datasets

    col = p.image_column
    if col is None:
        col = next((k for k, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    elif col not in ds.column_names:
        raise InputError("data.params.image_column", f"no column '{col}' (columns: "
                         f"{', '.join(ds.column_names)})")
    if col is None:
        return table_arrays(ds.to_pandas(), p, "the dataset")
    if p.label not in ds.column_names:
        raise InputError("data.params.label", f"no column '{p.label}' (columns: "
                         f"{', '.join(ds.column_names)})")
    x, shape = _pil_images(list(ds[col]), p)
    clients = (np.asarray([str(v) for v in ds[p.client_column]])
               if p.client_column else None)
    return Arrays(x, np.asarray(ds[p.label]), clients, shape)


def read_arrays(kind: str, path: Path, p: FileParams) -> tuple[Arrays, Arrays | None]:
    """(training rows, test rows or None) of one file or folder."""
    if not path.exists():
        raise InputError("data.path", f"file not found: '{path}'")
    if kind == "tabular":
        if path.is_dir():
            raise InputError("data.path", f"'{path}' is a directory; tabular data is one CSV or "
                             "parquet file")
        return table_arrays(_frame(path), p), None
    if kind == "images":
        if path.is_dir():
            return folder_arrays(path, p), None
        if path.suffix.lower() != ".npz":
            raise InputError("data.path", f"'{path}': images are an .npz (x, y) or a folder of "
                             "class subfolders")
        return npz_arrays(path, p)
    return hf_arrays(path, p)


_CACHE: dict[Any, tuple[Arrays, Arrays | None]] = {}


def cached_arrays(kind: str, path: str, p: FileParams) -> tuple[Arrays, Arrays | None]:
    """:func:`read_arrays`, remembered for the two most recent files (the planner and the
    workload of one process read the same file)."""
    f = Path(path)
    try:
        st = f.stat()
        key = (kind, str(f.resolve()), st.st_mtime_ns, st.st_size, p.model_dump_json())
    except OSError:
        return read_arrays(kind, f, p)
    hit = _CACHE.get(key)
    if hit is None:
        hit = read_arrays(kind, f, p)
        while len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = hit
    return hit


# --- the datasets -------------------------------------------------------------------------------
@dataclass
class NaturalDataset:
    """One client per id of the client column, each with its own rows."""

    rows: list[np.ndarray]  # per client: row indices into x_train
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...]
    names: list[str]
    kind: str = "classification"

    def __post_init__(self) -> None:
        self.n_features = int(self.x_train.shape[1])
        self.n_samples = np.array([len(r) for r in self.rows], np.int64)

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.rows[int(cid)]
        return self.x_train[r], self.y_train[r]

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x_test, self.y_test


def _labels(train: Any, test: Any) -> tuple[np.ndarray, np.ndarray, int]:
    values = np.concatenate([np.asarray(train).astype(str) if train.dtype.kind in "OUS"
                             else train, np.asarray(test).astype(str)
                             if test.dtype.kind in "OUS" else test])
    classes, codes = np.unique(values, return_inverse=True)
    codes = codes.astype(np.int64)
    if len(classes) < 2:
        raise InputError("data.params.label", f"the labels have {len(classes)} class (need 2+)")
    return codes[:len(train)], codes[len(train):], int(len(classes))


def build_file_dataset(kind: str, scenario: Any, population_size: int, p: FileParams) -> Any:
    d, seed = scenario.data, scenario.seed
    if not d.path:
        raise InputError("data.path", f"required for data.dataset '{kind}' (the file or folder "
                         "to read)")
    train, test = cached_arrays(kind, d.path, p)
    if d.test_path:
        if test is not None:
            raise InputError("data.test_path", "the data already has a test split (x_test in "
                             "the .npz, or the dataset's test split)")
        test, _ = cached_arrays(kind, d.test_path, p.model_copy(update={"test_split": None}))
        if test.input_shape != train.input_shape:
            raise InputError("data.test_path", f"samples of shape {test.input_shape}, the "
                             f"training data's are {train.input_shape}")
    natural = d.partition == "natural"
    if natural and train.clients is None:
        raise InputError("data.params.client_column", f"required for partition: natural (the "
                         f"column of client ids); '{kind}' data has no clients of its own")
    if not natural and p.client_column is not None:
        raise InputError("data.params.client_column", "used only by partition: natural "
                         f"(data.partition is '{d.partition}')")
    x, y_raw = train.x, train.y
    g = rngmod.stream(seed, rngmod.DATASET, 5)
    held = np.zeros(len(y_raw), bool)
    if test is None:  # hold out test_fraction of the rows (of each client's, when natural)
        if natural:
            assert train.clients is not None
            for c in np.unique(train.clients):
                rows = np.flatnonzero(train.clients == c)
                k = int(round(len(rows) * d.test_fraction))
                held[g.permutation(rows)[:k]] = True
        else:
            held[g.permutation(len(y_raw))[:int(round(len(y_raw) * d.test_fraction))]] = True
        xt, yt_raw = x[held], y_raw[held]
    else:
        xt, yt_raw = test.x, test.y
    xtr, ytr_raw = x[~held], y_raw[~held]
    if len(xtr) == 0 or len(xt) == 0:
        raise InputError("data.test_fraction", f"{len(xtr)} training and {len(xt)} test rows; "
                         "the data needs both")
    ytr, yte, k = _labels(ytr_raw, yt_raw)
    if p.standardize and len(train.input_shape) == 1 and kind != "images":  # a table's columns
        mu, sd = xtr.mean(0), xtr.std(0)
        sd[sd == 0] = 1.0
        xtr, xt = (xtr - mu) / sd, (xt - mu) / sd
    xtr, xt = xtr.astype(np.float32), xt.astype(np.float32)
    if natural:
        assert train.clients is not None
        ids = train.clients[~held]
        names, inv = np.unique(ids, return_inverse=True)
        per = [np.flatnonzero(inv == i) for i in range(len(names))]
        if len(per) < population_size:
            raise InputError("population.size", f"{population_size} clients but the data has "
                             f"{len(per)} client ids with training rows (one client each; "
                             "lower population.size, or use another partition)")
        counts = np.array([len(r) for r in per])
        keep = np.sort(np.argsort(-counts, kind="stable")[:population_size])
        return NaturalDataset([per[i] for i in keep], xtr, ytr, xt, yte, k, train.input_shape,
                              [str(names[i]) for i in keep])
    spec = partition_spec(d)
    sizes = scenario_sizes(scenario, population_size)
    return PooledDataset(xtr, ytr, xt, yte, k, sizes, spec.name, spec.alpha,
                         spec.shards_per_client, seed, partition_params=spec.params,
                         input_shape=train.input_shape)


def build_tabular(scenario: Any, population_size: int, params: Any = None) -> Any:
    """``data.dataset: tabular``: a CSV or parquet file (data.path)."""
    return build_file_dataset("tabular", scenario, population_size, params or FileParams())


def build_images(scenario: Any, population_size: int, params: Any = None) -> Any:
    """``data.dataset: images``: an .npz (x, y) or a folder of class subfolders (data.path)."""
    return build_file_dataset("images", scenario, population_size, params or FileParams())


def build_hf(scenario: Any, population_size: int, params: Any = None) -> Any:
    """``data.dataset: hf``: a Hugging Face dataset saved with save_to_disk (data.path)."""
    return build_file_dataset("hf", scenario, population_size, params or FileParams())

