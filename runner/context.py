"""What a sub-job function receives: params, workspace, logger, progress, checkpoints."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from runner.atomic import atomic_path, write_json
from runner.jobs import DeviceMap
from runner.workspace import Workspace

T = TypeVar("T")


class CheckpointStore:
    """Mid-sub-job state, so a long sub-job (ICM search, a training grid) resumes.

    The folder is keyed by the sub-job's function and params: a run with other
    params never picks up this one's state. The executor clears it once the
    sub-job completed. JSON state goes through ``save``/``load``; tensors
    through ``path(name)`` and ``atomic_path``.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def save(self, name: str, state: Any) -> None:
        write_json(self.folder / f"{name}.json", state)

    def load(self, name: str, default: Any = None) -> Any:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else default

    def path(self, name: str) -> Path:
        """A file path inside the store; write it with ``runner.atomic.atomic_path``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class SubJobContext:
    """The single argument of every sub-job function."""

    job: str
    subjob: str
    run_id: str
    params: dict[str, Any]
    workspace: Workspace
    device_map: DeviceMap
    reads: list[Path]
    writes: list[Path]
    checkpoint: CheckpointStore
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("latentrun"))

    def path(self, relative: str) -> Path:
        """A workspace path (``transformers/<name>`` follows the model mapping)."""
        return self.workspace.path(relative)

    def progress(self, items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        """Iterate with progress: a rich bar on a terminal, plain lines otherwise."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        label = description or f"{self.job}/{self.subjob}"
        if sys.stdout.isatty():
            from rich.progress import track

            yield from track(items, total=total, description=label)
            return
        yield from _plain_progress(items, total, label)


def _plain_progress(items: Iterable[T], total: int | None, label: str) -> Iterator[T]:
    """One line every 10 % (or every 30 s without a total): readable in log files."""
    start = last = time.monotonic()
    step = max(1, (total or 0) // 10)
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if (total and (done % step == 0 or done == total)) or (not total and now - last > 30):
            last = now
            of = f"/{total}" if total else ""
            print(f"{label}: {done}{of} ({now - start:.1f}s)", flush=True)


__all__ = ["CheckpointStore", "SubJobContext", "atomic_path"]
