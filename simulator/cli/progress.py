"""What `fedfleet run` and `fedfleet resume` show while a run goes and when it ends.

- On a terminal (stderr is a TTY, or ``FEDFLEET_PROGRESS=1``): a rich progress bar on stderr
  (round, simulated time, accuracy, elapsed, ETA) whose status column says what start-up waits
  for ("starting Ray (2 CPUs)...", "starting 2 actors, importing torch...").
- When stdout is not a terminal (a log file, a cluster job, a pipe): one plain line per round
  (every ``log_every`` rounds, and always the last), flushed at once, and the start-up status
  lines, so a log shows progress while the run goes, never only at its end.
- At the end: a summary (:func:`summary_lines`): rounds, final accuracy and loss, simulated and
  wall time, time to the target accuracy when one is given, and where the files are.

Start-up status comes through the ``simulator.status`` logger (simulator/execution emits it), so
library users see the same lines with ``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

STATUS_LOGGER = "simulator.status"


def fmt_s(s: float) -> str:
    """Seconds in the unit that reads best (s, min, h)."""
    if s != s:  # NaN
        return "-"
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.2f}h"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


class _StatusHandler(logging.Handler):
    def __init__(self, progress: RunProgress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress.status(record.getMessage())
        except Exception:  # never let a display problem end a run
            self.handleError(record)


class RunProgress:
    """Context manager: ``with RunProgress(20, "quickstart") as p: run(..., on_round=p.on_round)``.

    ``bar``/``plain`` default to what the streams are (see the module docstring)."""

    def __init__(self, total: int, label: str, *, log_every: int = 1,
                 out: IO[str] | None = None, err: IO[str] | None = None,
                 bar: bool | None = None, plain: bool | None = None) -> None:
        self.total = int(total)
        self.label = label
        self.log_every = max(0, int(log_every))
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.bar = (_isatty(self.err) or os.environ.get("FEDFLEET_PROGRESS") == "1") \
            if bar is None else bar
        self.plain = (not _isatty(self.out)) if plain is None else plain
        self._prog: Any = None
        self._task: Any = None
        self._handler = _StatusHandler(self)
        self._logger = logging.getLogger(STATUS_LOGGER)
        self._old_level = logging.NOTSET
        self._rounds_seen = 0

    def __enter__(self) -> RunProgress:
        if self.bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._prog = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("round {task.completed}/{task.total}"),
                TextColumn("sim {task.fields[sim]}"), TextColumn("acc {task.fields[acc]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("[dim]{task.fields[status]}"),
                console=Console(file=self.err),
            )
            self._task = self._prog.add_task(self.label, total=self.total or None, sim="0s",
                                             acc="-", status="")
            self._prog.start()
        self._old_level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._handler)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._old_level)
        if self._prog is not None:
            self._prog.stop()

    def set_total(self, total: int) -> None:
        self.total = int(total)
        if self._prog is not None:
            self._prog.update(self._task, total=self.total or None)

    def status(self, message: str) -> None:
        """A start-up line: the bar's status column, and a plain line in a log."""
        if self._prog is not None:
            self._prog.update(self._task, status=message)
        if self.plain:
            print(f"[{self.label}] {message}", file=self.out, flush=True)

    def on_round(self, rep: Any) -> None:
        self._rounds_seen += 1
        acc = float(rep.accuracy)
        loss = float(getattr(rep, "loss", math.nan))
        done = int(rep.round) + 1
        if self._prog is not None:
            self._prog.update(self._task, completed=done, sim=fmt_s(float(rep.sim_end_s)),
                              acc="-" if acc != acc else f"{acc:.3f}", status="")
        if not self.plain or self.log_every == 0:
            return
        last = self.total > 0 and done >= self.total
        if done % self.log_every and not last and self._rounds_seen > 1:
            return
        of = f"/{self.total}" if self.total else ""
        parts = [f"[{self.label}] round {done}{of}", f"sim {fmt_s(float(rep.sim_end_s))}"]
        if acc == acc:
            parts.append(f"accuracy {acc:.4f}")
        if loss == loss:
            parts.append(f"loss {loss:.4f}")
        parts.append(f"completed {int(rep.completed)}")
        print("  ".join(parts), file=self.out, flush=True)


def _first_hit(rounds: Any, target: float) -> tuple[int, float] | None:
    acc = rounds.column("accuracy").to_pylist()
    end = rounds.column("sim_end_s").to_pylist()
    rnd = rounds.column("round").to_pylist()
    for a, e, r in zip(acc, end, rnd, strict=True):
        if a is not None and a == a and a >= target:
            return int(r), float(e)
    return None


def summary_lines(run_dir: Path, target: float | None = None,
                  dashboard: Path | None = None) -> list[str]:
    """The end-of-run summary of a complete run directory (manifest.json, rounds.parquet)."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    man: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    rounds = pq.ParquetFile(run_dir / "rounds.parquet").read()  # read_table imports pandas
    n_rows = rounds.num_rows
    planned, ran = man.get("rounds"), man.get("rounds_run", n_rows)
    sim_s = float(man.get("sim_end_s") or 0.0)
    wall = man.get("wall_s")
    head = f"run '{man.get('name', run_dir.name)}' finished: {ran} rounds"
    if man.get("stopped_early"):
        head = (f"run '{man.get('name', run_dir.name)}' stopped after {ran} of {planned} rounds "
                f"({man.get('stop_reason', 'stopped by a callback')})")
    head += f", simulated {fmt_s(sim_s)}"
    if isinstance(wall, (int, float)):
        head += f", wall {fmt_s(float(wall))}"
    if man.get("resumed"):
        head += " (resumed)"
    lines = [head]
    accs = [(i, a) for i, a in enumerate(rounds.column("accuracy").to_pylist())
            if a is not None and a == a]
    if accs:
        i, a = accs[-1]
        loss = rounds.column("loss")[i].as_py()
        best_i, best = max(accs, key=lambda t: t[1])
        line = f"  final accuracy {a:.4f}"
        if loss is not None and loss == loss:
            line += f" (loss {loss:.4f})"
        line += f"; best {best:.4f} at round {int(rounds.column('round')[best_i].as_py()) + 1}"
        lines.append(line)
        if target is not None:
            hit = _first_hit(rounds, target)
            if hit is None:
                lines.append(f"  target accuracy {target:g} not reached in {ran} rounds")
            else:
                lines.append(f"  time to accuracy {target:g}: {fmt_s(hit[1])} simulated "
                             f"(round {hit[0] + 1})")
    else:
        why = "analytic mode trains nothing" if man.get("mode") == "analytic" else "no round " \
            "was evaluated"
        lines.append(f"  accuracy: none ({why})")
        if target is not None:
            lines.append(f"  time to accuracy {target:g}: n/a (no accuracy)")
    n_clients = pq.ParquetFile(run_dir / "clients.parquet").metadata.num_rows \
        if (run_dir / "clients.parquet").exists() else 0
    lines.append(f"  files: {run_dir}/ (rounds.parquet {n_rows} rows, clients.parquet "
                 f"{n_clients:,} rows, manifest.json)")
    if dashboard is not None:
        lines.append(f"  dashboard: {dashboard}")
    return lines


def resume_total(run: str | Path) -> int:
    """The planned rounds of the unfinished run ``run`` (its scenario.json), 0 if unreadable
    (``resume_run`` then reports the problem)."""
    p = Path(run)
    partial = p if p.name.endswith(".partial") else p.with_name(p.name + ".partial")
    try:
        return int(json.loads((partial / "scenario.json").read_text()).get("rounds", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0
