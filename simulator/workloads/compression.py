"""Upload compression applied to real client updates (numpy only); byte counts as the cost model.

Methods (``model.workloads.compression``; formulas in ``simulator.planning.llm_cost.upload_bytes``):

* ``int8`` / ``int4``: block-wise absmax quantization (as bitsandbytes / QLoRA, Dettmers et al.
  2022, 2023): each block of ``block_size`` elements is sent as signed integers in
  ``[-127, 127]`` (int8) or ``[-7, 7]`` (int4, two per byte) plus one scale of ``scale_bytes``.
  Scales are rounded *up* to their wire precision (fp16 for 2 bytes), so no value is clipped and
  the error per element is at most half a quantization step: ``|x - x_hat| <= scale / 2``.
* ``topk``: the ``k = ceil(fraction * n)`` largest-magnitude elements as (value, int32 index)
  pairs, with **error feedback** (Stich et al. 2018, "Sparsified SGD with Memory"; Karimireddy
  et al. 2019, "Error Feedback Fixes SignSGD"): what a client did not send is added to its next
  update. Values are kept at full precision (the cost model charges ``dtype_bytes`` for them).

Error-feedback memory is per client and lives on the host that trains the client (a client
always maps to the same actor). It is bounded two ways: a residual older than
``EF_MAX_AGE_ROUNDS`` rounds is dropped (a rule that depends only on the client's own history,
so results stay identical for any actor layout), and a host holding more than ``EF_MAX_BYTES``
drops its stalest residuals first (a safety valve that can make results layout-dependent; a
warning says so). A residual whose length no longer matches (the client's rank or workload kind
changed) is reset.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator import FedFleetError

EF_MAX_AGE_ROUNDS = 100
EF_MAX_BYTES = 256 * 2**20
_SCALE_DTYPES: dict[float, type[np.floating[Any]]] = {2.0: np.float16, 4.0: np.float32,
                                                      8.0: np.float64}
LEVELS = {"int8": 127, "int4": 7}


@dataclass(frozen=True)
class CompressionSpec:
    method: str = "none"  # none | int8 | int4 | topk
    block_size: int = 64
    scale_bytes: float = 2.0
    topk_fraction: float = 0.01
    index_bytes: float = 4.0
    value_bytes: float = 4.0  # dense / top-k value width (the model's dtype_bytes)

    @classmethod
    def from_settings(cls, c: Any, dtype_bytes: float) -> CompressionSpec:
        """From a scenario ``Compression`` block (``model.workloads.compression``)."""
        return cls(c.method, int(c.block_size), float(c.scale_bytes), float(c.topk_fraction),
                   float(c.index_bytes), float(dtype_bytes))


def payload_bytes(spec: CompressionSpec, n: int) -> float:
    """Bytes on the wire for ``n`` update elements (equal to llm_cost.upload_bytes)."""
    if spec.method == "none":
        return n * spec.value_bytes
    if spec.method in LEVELS:
        per = 1.0 if spec.method == "int8" else 0.5
        return n * per + math.ceil(n / spec.block_size) * spec.scale_bytes
    return math.ceil(n * spec.topk_fraction) * (spec.value_bytes + spec.index_bytes)


# --- quantization ---------------------------------------------------------------------------------
def _wire_scale(scale: np.ndarray, scale_bytes: float) -> np.ndarray:
    """Scales at their wire precision, rounded up so that |x| / scale <= levels never clips."""
    dt = _SCALE_DTYPES.get(float(scale_bytes), np.float32)
    s = scale.astype(dt)
    low = s.astype(np.float64) < scale
    s[low] = np.nextafter(s[low], np.array(np.inf, dtype=dt))
    return s


def quantize(x: np.ndarray, method: str, block: int, scale_bytes: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes [n], per-block scales) of ``x`` (float), symmetric absmax per block."""
    levels = LEVELS[method]
    n = x.size
    nb = -(-n // block)
    padded = np.zeros(nb * block, np.float64)
    padded[:n] = x
    blocks = padded.reshape(nb, block)
    scale = _wire_scale(np.abs(blocks).max(axis=1) / levels, scale_bytes)
    if not np.all(np.isfinite(scale)):
        raise FedFleetError("compression: an update is too large for its quantization scales "
                            "(diverged training? lower training.lr, or use scale_bytes: 4)")
    s64 = scale.astype(np.float64)[:, None]
    q = np.divide(blocks, s64, out=np.zeros_like(blocks), where=s64 > 0)
    q = np.clip(np.rint(q), -levels, levels).astype(np.int8)
    return q.reshape(-1)[:n], scale


def dequantize(q: np.ndarray, scale: np.ndarray, block: int) -> np.ndarray:
    n = q.size
    nb = scale.size
    padded = np.zeros(nb * block, np.float64)
    padded[:n] = q
    return (padded.reshape(nb, block) * scale.astype(np.float64)[:, None]).reshape(-1)[:n]


def pack_int4(q: np.ndarray) -> np.ndarray:
    """Two signed 4-bit codes per byte (offset binary): ``ceil(n / 2)`` bytes."""
    u = (q.astype(np.int16) + 8).astype(np.uint8)
    if u.size % 2:
        u = np.append(u, np.uint8(8))
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, n: int) -> np.ndarray:
    lo = (packed & 0x0F).astype(np.int16) - 8
    hi = (packed >> 4).astype(np.int16) - 8
    return np.stack([lo, hi], axis=1).reshape(-1)[:n].astype(np.int8)


# --- top-k with error feedback ------------------------------------------------------------------
def topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted int32 indices, values) of the ``k`` largest |x| (ties: lowest index first)."""
    k = min(max(int(k), 0), x.size)
    if k == 0:
        return np.zeros(0, np.int32), np.zeros(0, x.dtype)
    order = np.argsort(-np.abs(x), kind="stable")[:k]
    idx = np.sort(order).astype(np.int32)
    return idx, x[idx]


class ResidualStore:
    """Per-client error-feedback residuals, bounded by age and by bytes (see module docstring)."""

    def __init__(self, max_age_rounds: int = EF_MAX_AGE_ROUNDS, max_bytes: int = EF_MAX_BYTES):
        self.max_age = max_age_rounds
        self.max_bytes = max_bytes
        self._data: dict[int, tuple[int, np.ndarray]] = {}
        self.nbytes = 0
        self._warned = False

    def __len__(self) -> int:
        return len(self._data)

    def get(self, cid: int, rnd: int, n: int) -> np.ndarray:
        hit = self._data.get(cid)
        if hit is None or rnd - hit[0] > self.max_age or hit[1].size != n:
            return np.zeros(n, np.float64)
        return hit[1].astype(np.float64)

    def put(self, cid: int, rnd: int, residual: np.ndarray) -> None:
        old = self._data.pop(cid, None)
        if old is not None:
            self.nbytes -= old[1].nbytes
        r = residual.astype(np.float32)
        self._data[cid] = (rnd, r)
        self.nbytes += r.nbytes
        self._expire(rnd)

    def _expire(self, rnd: int) -> None:
        stale = [c for c, (t, _) in self._data.items() if rnd - t > self.max_age]
        for c in stale:
            self.nbytes -= self._data.pop(c)[1].nbytes
        if self.nbytes > self.max_bytes:
            if not self._warned:
                warnings.warn("error-feedback memory is over its byte budget: dropping the "
                              "stalest residuals (results may now depend on the actor layout)",
                              RuntimeWarning, stacklevel=3)
                self._warned = True
            for c in sorted(self._data, key=lambda c: (self._data[c][0], c)):
                if self.nbytes <= self.max_bytes:
                    break
                self.nbytes -= self._data.pop(c)[1].nbytes


class Compressor:
    """Encodes a client's update as it would travel and decodes it as the server sees it."""

    def __init__(self, spec: CompressionSpec, store: ResidualStore | None = None) -> None:
        self.spec = spec
        self.store = store if store is not None else ResidualStore()

    @property
    def active(self) -> bool:
        return self.spec.method != "none"

    def roundtrip(self, cid: int, rnd: int, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(decoded update, bytes sent) for client ``cid``'s update ``x`` in round ``rnd``."""
        s = self.spec
        x = np.asarray(x, np.float64)
        if s.method == "none":
            return x, payload_bytes(s, x.size)
        if s.method in LEVELS:
            q, scale = quantize(x, s.method, s.block_size, s.scale_bytes)
            wire = q.nbytes if s.method == "int8" else pack_int4(q).nbytes
            if s.method == "int4":
                q = unpack_int4(pack_int4(q), x.size)
            sent = wire + scale.size * s.scale_bytes
            return dequantize(q, scale, s.block_size), float(sent)
        v = x + self.store.get(cid, rnd, x.size)
        k = math.ceil(x.size * s.topk_fraction)
        idx, vals = topk(v, k)
        out = np.zeros_like(v)
        out[idx] = vals
        self.store.put(cid, rnd, v - out)
        return out, float(idx.size * (s.value_bytes + s.index_bytes))
