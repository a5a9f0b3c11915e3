"""Terminal output: the summary table, the plugin/job listing and the run log tee."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from runner.jobs import RunRecord


def console() -> Console:
    # Built per call: sys.stdout may be replaced by the tee after start-up.
    return Console(file=sys.stdout, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


class Tee:
    """Write to the terminal and to a log file (``--output_path``)."""

    def __init__(self, stream: TextIO, log: TextIO):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def start_log(output_path: str) -> Path:
    """Tee stdout and stderr into ``<output_path>/<timestamp>.txt``; return the file."""
    folder = Path(output_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}.txt"
    log = open(path, "a", buffering=1)
    sys.stdout = Tee(sys.__stdout__, log)  # type: ignore[assignment]
    sys.stderr = Tee(sys.__stderr__, log)  # type: ignore[assignment]
    return path


def summary_table(records: list[RunRecord]) -> Table:
    table = Table(title="latentrun summary")
    for column in ("run", "sub-job", "status", "seconds"):
        table.add_column(column)
    for record in records:
        if not record.subjobs:
            table.add_row(record.run_id, "-", record.status, "")
        for name, sub in record.subjobs.items():
            status = "skipped (done)" if sub.get("reused") else sub.get("status", "")
            if sub.get("error"):
                status += f": {sub['error']}"
            seconds = f"{sub['seconds']:.1f}" if "seconds" in sub else ""
            table.add_row(record.run_id, name, status, seconds)
    return table


def listing_tables(plugins: list[Any], jobs: dict[str, Any], subjobs: dict[str, list[str]]) -> list[Table]:
    plugin_table = Table(title="plugins")
    for column in ("plugin", "distribution", "version", "status"):
        plugin_table.add_column(column)
    for info in plugins:
        status = info.status if not info.error else f"{info.status}: {info.error}"
        plugin_table.add_row(info.name, info.distribution, info.version, status)
    job_table = Table(title="jobs")
    for column in ("job", "plugin", "description", "sub-jobs", "device map"):
        job_table.add_column(column)
    for name, job in jobs.items():
        parts = ", ".join(job.group) if job.is_group else ", ".join(subjobs.get(name, []))
        job_table.add_row(name, job.plugin, job.description, ("group: " if job.is_group else "") + parts,
                          "" if job.is_group else job.device_map.describe())
    return [plugin_table, job_table]
