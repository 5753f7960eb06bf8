"""Restricted unpickling of untrusted data: plain containers and scalars only, no code runs."""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

from simulator import InputError
from simulator.io.files import TRACE_MAX_BYTES, read_regular_file

_ALLOWED = "only dicts, lists, strings and numbers are allowed"


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


# --- safe unpickling ----------------------------------------------------------------------------
class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves no globals at all.

    Every class, function or reduce payload (``os.system``, ``collections.OrderedDict``, numpy
    scalars, ...) is looked up through :meth:`find_class`, which always raises, so only the
    opcodes for dict/list/tuple/set/str/bytes/int/float/bool/None succeed. Persistent ids are
    refused too. ``origin`` names the file in the error.
    """

    def __init__(self, file: Any, *, origin: str = "trace") -> None:
        super().__init__(file)
        self._origin = origin

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - see class docstring
        raise InputError(
            self._origin,
            f"trace file contains a Python object of type {module}.{name}; {_ALLOWED}",
        )

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise InputError(self._origin, f"trace file uses a persistent object reference; {_ALLOWED}")


def safe_load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pickle of plain data only; every failure becomes a one-line ``InputError``."""
    origin = str(path)
    try:
        data = read_regular_file(path, TRACE_MAX_BYTES, what="trace file")
        return SafeUnpickler(io.BytesIO(data), origin=origin).load()
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(origin, "file not found") from None
    except PermissionError:
        raise InputError(origin, "permission denied") from None
    except IsADirectoryError:
        raise InputError(origin, "is a directory, expected a pickle file") from None
    except OSError as exc:
        raise InputError(origin, f"cannot read file ({exc.strerror or exc})") from None
    except EOFError:
        raise InputError(origin, "truncated or empty pickle (unexpected end of file)") from None
    except (RecursionError, MemoryError):
        raise InputError(origin, "pickle is nested too deeply or too large to load") from None
    except Exception as exc:  # UnpicklingError, ValueError, KeyError, struct/unicode errors ...
        if "truncated" in str(exc):
            raise InputError(origin, "truncated pickle (data ends early)") from None
        why = f"{type(exc).__name__}: {_first_line(exc)}"
        raise InputError(origin, f"corrupt or unsupported pickle ({why})") from None
