"""Where the run_experiment jobs read and write, as workspace-relative paths (no torch).

Result sets mirror the seed's ``output/<task>/[<condition>/]<model>[_<revision>].csv``
under ``W/experiments/run_experiment/``; a grid's summary goes to
``W/experiments/run_experiment/summary/<tasks>_<hash of the grid>/``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from plugins.run_experiment.config import Settings

ROOT = "experiments/run_experiment"


def result_stem(s: Settings) -> str:
    folder = "/".join(p for p in (ROOT, s.task, s.condition) if p)
    return f"{folder}/{s.model_slug}{'_' + s.revision if s.revision else ''}"


def result_files(s: Settings) -> dict[str, str]:
    """The per-item CSV and its summary JSON (measures with intervals, model size, training tokens)."""
    stem = result_stem(s)
    return {"csv": f"{stem}.csv", "summary": f"{stem}.json"}


def model_reads(s: Settings) -> list[str]:
    """The model (or checkpoint) folder the plan checks; Hub ids (owner/name) are checked when loading."""
    if "/" in s.model:
        return []
    return [f"transformers/{s.model}" + (f"/revisions/{s.revision}" if s.revision else "")]


def grid_folder(params: Mapping[str, Any], tasks: Sequence[str]) -> str:
    key = {k: params[k] for k in sorted(params)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{ROOT}/summary/{'-'.join(tasks)}_{digest}"


def summary_files(folder: str, tasks: Sequence[str]) -> dict[str, str]:
    files = {"csv": f"{folder}/summary.csv", "markdown": f"{folder}/summary.md"}
    for task in tasks:
        files[f"{task}_size"] = f"{folder}/{task}_by_model_size.png"
        files[f"{task}_tokens"] = f"{folder}/{task}_by_training_tokens.png"
    return files
