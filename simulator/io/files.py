"""Reading input files safely: regular files only, under a stated size limit.

Scenario, profile, trace and checkpoint files are opened with ``O_NONBLOCK`` (a FIFO opens at
once instead of waiting for a writer), checked with ``fstat`` to be a regular file (not a FIFO,
device, socket or directory) and read only if they are under the limit for their kind, so a
named pipe never hangs a run and ``/dev/zero`` never fills memory. Every failure is one
``InputError`` line naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from simulator.errors import InputError

MiB = 1 << 20
SCENARIO_MAX_BYTES = 4 * MiB  # scenario YAML files
PROFILE_MAX_BYTES = 1 * MiB  # one device profile YAML
CHECKPOINT_MAX_BYTES = 64 * MiB  # checkpoint.json and scenario.json of a run directory
TRACE_MAX_BYTES = 2048 * MiB  # trace tables (parquet) and FedScale pickles


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def read_regular_file(path: str | os.PathLike[str], limit: int, field: str = "",
                      what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    ``field`` names the scenario field the path came from (empty: the path itself is named);
    ``what`` says what the file should be ("scenario file", "trace file")."""
    p = str(path)

    def fail(message: str) -> InputError:
        return InputError(field, f"'{p}': {message}") if field else InputError(p, message)

    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise fail("file not found") from None
    except PermissionError:
        raise fail("permission denied") from None
    except OSError as exc:
        raise fail(f"cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail(f"is {_kind(st.st_mode)}; a {what} must be a regular file")
        if st.st_size > limit:
            raise fail(f"is {_size(st.st_size)}, over the {_size(limit)} limit for a {what}")
        chunks: list[bytes] = []
        total = 0
        while True:  # read to the end, but never past the limit (a file still growing)
            chunk = os.read(fd, min(8 * MiB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise fail(f"grew over the {_size(limit)} limit for a {what} while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_regular_text(path: str | os.PathLike[str], limit: int, field: str = "",
                      what: str = "file") -> str:
    """:func:`read_regular_file` decoded as UTF-8 (a one-line error if it is not)."""
    data = read_regular_file(path, limit, field, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        p = str(path)
        msg = f"not UTF-8 text (a {what} is text)"
        raise (InputError(field, f"'{p}': {msg}") if field else InputError(p, msg)) from None


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or a path under it."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False
