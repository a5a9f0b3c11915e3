"""Per-run manifests: ``experiments/runs/<run-id>/manifest.json``.

A run is one job with one set of resolved params; its id is the job name
plus a hash of those params, so rerunning the same command finds the same
run and resumes it. Only the runner process writes a manifest (workers
report through per-sub-job status files), so no file has two writers.
A sub-job is complete when any manifest records its key (function + params
+ outputs) as completed and every output it declared exists.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from runner.atomic import write_json

TRACKED_PACKAGES = ("latentrun", "torch", "transformers", "accelerate", "safetensors", "datasets", "lm-eval",
                    "tokenizers", "numpy", "pluggy")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES + extra:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_revision() -> str:
    """The latentrun checkout's revision (``+dirty`` with local changes), or ``""``."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{rev}+dirty" if rev and dirty else rev


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Manifest:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, runs_dir: Path, run_id: str, **header: Any) -> Manifest:
        """Load an earlier manifest of this run, or start one (not written yet)."""
        path = runs_dir / run_id / "manifest.json"
        data = json.loads(path.read_text()) if path.exists() else {"run_id": run_id, "created": now(), "subjobs": {}}
        data.update(header)
        return cls(path=path, data=data)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def subjob(self, name: str) -> dict[str, Any]:
        return self.data["subjobs"].setdefault(name, {})

    def save(self) -> None:
        self.data["updated"] = now()
        write_json(self.path, self.data)


def completed_subjobs(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Every completed sub-job record of every manifest, by sub-job key."""
    done: dict[str, dict[str, Any]] = {}
    for path in sorted(runs_dir.glob("*/manifest.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # never fatal: at worst a sub-job runs again
        for record in data.get("subjobs", {}).values():
            if record.get("status") == "completed" and record.get("key"):
                done[record["key"]] = record
    return done
