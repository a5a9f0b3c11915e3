"""Atomic outputs: the one way every plugin writes a file or folder.

A writer gets a temporary path beside the target and the target appears
only when the writer finished (``os.replace``), so Ctrl-C, a crash or
SIGKILL never leave a half-written artifact behind. Leftover temporaries of
a killed writer are removed the next time the same target is written::

    with atomic_path(out / "directions.safetensors") as tmp:
        safetensors.torch.save_file(tensors, tmp)
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

PARTIAL_SUFFIX = ".latentrun-partial"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def partials_of(target: Path) -> list[Path]:
    """Temporaries a killed writer of ``target`` may have left."""
    return list(target.parent.glob(f".{target.name}.*{PARTIAL_SUFFIX}"))


@contextmanager
def atomic_path(target: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target`` atomically.

    With ``directory=True`` the temporary is an (empty, created) folder, for
    writers such as ``save_pretrained`` that fill a directory.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in partials_of(target):
        _remove(stale)
    tmp = target.parent / f".{target.name}.{os.getpid()}{PARTIAL_SUFFIX}"
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer of {target} wrote nothing to {tmp}")
        if directory and target.exists():
            old = target.parent / f".{target.name}.old.{os.getpid()}{PARTIAL_SUFFIX}"
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            if not directory:
                with open(tmp, "rb") as handle:
                    os.fsync(handle.fileno())
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json(target: str | Path, data: Any) -> Path:
    return write_text(target, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_csv(target: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """``rows`` as CSV with a header (``columns``, default the first row's keys; other keys are left out)."""
    names = list(columns if columns is not None else (rows[0] if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(target, buffer.getvalue())
