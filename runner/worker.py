"""Runs sub-jobs: in a child process (``python -m runner.worker SPEC``) or inline.

The worker imports each sub-job's function only now (so heavy imports stay
out of the runner), gives it a ``SubJobContext`` and reports the outcome
through one status file per sub-job, written atomically. The runner reads
those and alone writes the manifest.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from runner.atomic import write_json
from runner.context import CheckpointStore, SubJobContext
from runner.jobs import DeviceMap
from runner.workspace import Workspace


def resolve_function(spec: str) -> Callable[[SubJobContext], Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ValueError(f"sub-job function {spec!r} must look like 'package.module:function'")
    function = getattr(importlib.import_module(module_name), attr, None)
    if not callable(function):
        raise ValueError(f"{module_name} has no function {attr!r}")
    return function


def checkpoint_folder(workspace: Workspace, job: str, subjob: str, key: str) -> Path:
    return workspace.experiments / "checkpoints" / job / f"{subjob}-{key}"


def _already_completed(status_file: Path, workspace: Workspace, writes: list[str]) -> bool:
    if not status_file.exists():
        return False
    status = json.loads(status_file.read_text()).get("status")
    return status == "completed" and all(workspace.path(w).exists() for w in writes)


def run_spec(spec: dict[str, Any]) -> bool:
    """Run the sub-jobs of one spec in order; stop at the first failure."""
    workspace = Workspace.open(spec["workspace"])
    status_dir = Path(spec["status_dir"])
    for sub in spec["subjobs"]:
        if _already_completed(status_dir / f"{sub['name']}.json", workspace, sub["writes"]):
            continue  # a requeued cluster job: this sub-job finished before the preemption
        logger = logging.getLogger(f"latentrun.{spec['job']}.{sub['name']}")
        ctx = SubJobContext(
            job=spec["job"], subjob=sub["name"], run_id=spec["run_id"], params=sub["params"],
            workspace=workspace, device_map=DeviceMap.parse(spec["device_map"]),
            reads=[workspace.path(p) for p in sub["reads"]], writes=[workspace.path(p) for p in sub["writes"]],
            checkpoint=CheckpointStore(checkpoint_folder(workspace, spec["job"], sub["name"], sub["key"])),
            logger=logger,
        )
        start = time.time()
        record: dict[str, Any] = {"started": start}
        try:
            resolve_function(sub["function"])(ctx)
            missing = [str(p) for p in ctx.writes if not p.exists()]
            if missing:
                raise RuntimeError(f"sub-job finished but did not write: {', '.join(missing)}")
            record.update(status="completed")
        except KeyboardInterrupt:
            record.update(status="interrupted")
            write_json(status_dir / f"{sub['name']}.json", {**record, "finished": time.time()})
            raise
        except Exception as err:
            logger.error("%s failed: %s", sub["name"], err)
            traceback.print_exc()
            record.update(status="failed", error=f"{type(err).__name__}: {err}")
        record["finished"] = time.time()
        write_json(status_dir / f"{sub['name']}.json", record)
        if record["status"] != "completed":
            return False
    return True


def configure_logging() -> None:
    if logging.getLogger().handlers:
        return
    if sys.stdout.isatty():
        from rich.logging import RichHandler

        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    else:
        logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    configure_logging()
    spec = json.loads(Path(argv[0]).read_text())
    try:
        return 0 if run_spec(spec) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
