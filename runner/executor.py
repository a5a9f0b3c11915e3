"""Executors: one interface, a local implementation (and SLURM in the scale-out issue).

The base class owns what every executor shares: resume (skip sub-jobs a
manifest records as completed whose outputs exist), the manifest (written
only here), lifecycle hooks and fail-fast. A subclass only decides where a
group of sub-jobs runs: ``launch(spec) -> return code``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from runner.jobs import RunRecord
from runner.manifest import Manifest, completed_subjobs, git_revision, package_versions
from runner.plan import PlannedRun, PlannedSubJob
from runner.worker import checkpoint_folder, run_spec
from runner.context import CheckpointStore
from runner.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ExecOptions:
    force: bool = False
    fail_fast: bool = False
    command: str = ""


def process_groups(subjobs: list[PlannedSubJob]) -> list[list[PlannedSubJob]]:
    """Consecutive sub-jobs with the same non-empty ``process_group`` share a process."""
    groups: list[list[PlannedSubJob]] = []
    for planned in subjobs:
        group = planned.subjob.process_group
        if groups and group and groups[-1][-1].subjob.process_group == group:
            groups[-1].append(planned)
        else:
            groups.append([planned])
    return groups


class RunBusy(RuntimeError):
    """Another runner process holds this run."""


class Executor(ABC):
    name = "base"

    def __init__(self, workspace: Workspace, pm: pluggy.PluginManager, options: ExecOptions):
        self.workspace = workspace
        self.pm = pm
        self.options = options
        self.interrupted = False
        self._locks: dict[str, Any] = {}

    @abstractmethod
    def launch(self, spec: dict[str, Any], spec_path: Path) -> int:
        """Run the sub-jobs of ``spec`` (in order); return the process' exit code."""

    # -- shared logic ------------------------------------------------------
    def execute(self, runs: list[PlannedRun]) -> list[RunRecord]:
        done = {} if self.options.force else completed_subjobs(self.workspace.runs)
        records: list[RunRecord] = []
        for run in runs:
            if self.interrupted or (self.options.fail_fast and any(r.status == "failed" for r in records)):
                records.append(RunRecord(run.run_id, run.job.name, run.params, "", status="not run"))
                continue
            try:
                records.append(self.execute_run(run, done))
            except RunBusy as busy:
                print(f"  {busy}", flush=True)
                records.append(RunRecord(run.run_id, run.job.name, run.params, "", status="busy"))
        return records

    def execute_run(self, run: PlannedRun, done: dict[str, dict[str, Any]]) -> RunRecord:
        manifest, record = self.open_run(run)
        status = "completed"
        for group in process_groups(run.subjobs):
            pending = self.pending(run, group, manifest, record, done)
            if pending:
                status = self._run_group(run, pending, manifest, record, done)
                if status != "completed":
                    break
        self.finish_run(run, manifest, record, status)
        return record

    def open_run(self, run: PlannedRun) -> tuple[Manifest, RunRecord]:
        """Lock the run (one runner per run id), load or start its manifest, announce it."""
        self._lock(run.run_id)
        manifest = Manifest.open(
            self.workspace.runs, run.run_id, job=run.job.name, plugin=run.job.plugin, params=run.params,
            device_map=run.device_map.to_json(), executor=self.name, command=self.options.command,
            versions=package_versions(), git_revision=git_revision(),
        )
        record = RunRecord(run.run_id, run.job.name, run.params, str(manifest.path), status="running")
        manifest.data["status"] = "running"
        manifest.save()
        self.pm.hook.latentrun_job_start(job=run.job, run=record)
        return manifest, record

    def finish_run(self, run: PlannedRun, manifest: Manifest, record: RunRecord, status: str) -> None:
        record.status = status
        manifest.data["status"] = status
        manifest.save()
        self._unlock(run.run_id)
        self.pm.hook.latentrun_job_finish(job=run.job, run=record, status=status)

    def _lock(self, run_id: str) -> None:
        """Hold ``runs/<run-id>/.lock`` until the run ends, so two runners never write one manifest."""
        path = self.workspace.runs / run_id / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise RunBusy(f"run {run_id} is already being run by {owner}; wait for it or stop it") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._locks[run_id] = handle

    def _unlock(self, run_id: str) -> None:
        handle = self._locks.pop(run_id, None)
        if handle is not None:
            handle.close()  # closing releases the lock

    def pending(self, run: PlannedRun, group: list[PlannedSubJob], manifest: Manifest, record: RunRecord,
                done: dict[str, dict[str, Any]]) -> list[PlannedSubJob]:
        """The sub-jobs of ``group`` that must run; completed ones are recorded as skipped."""
        pending = []
        for planned in group:
            if self._is_complete(planned, done):
                self._record(manifest, record, planned, {"status": "completed", "reused": True,
                                                        "reused_from": done[planned.key].get("run_id", "")})
                self.pm.hook.latentrun_subjob_finish(job=run.job, subjob=planned.subjob, run=record,
                                                     status="skipped")
                print(f"  skip {run.job.name}/{planned.name}: completed earlier (--force reruns it)", flush=True)
            else:
                pending.append(planned)
        return pending

    def _is_complete(self, planned: PlannedSubJob, done: dict[str, dict[str, Any]]) -> bool:
        return planned.key in done and all(self.workspace.path(w).exists() for w in planned.writes)

    def _run_group(self, run: PlannedRun, group: list[PlannedSubJob], manifest: Manifest, record: RunRecord,
                   done: dict[str, dict[str, Any]]) -> str:
        spec, spec_path = self.prepare(run, group, manifest, record)
        try:
            returncode = self.launch(spec, spec_path)
        except KeyboardInterrupt:
            self.interrupted = True
            returncode = 130
        return self.collect(run, group, manifest, record, done, returncode)

    def prepare(self, run: PlannedRun, group: list[PlannedSubJob], manifest: Manifest,
                record: RunRecord) -> tuple[dict[str, Any], Path]:
        """Mark the group running, announce it, write the worker spec; nothing runs yet."""
        status_dir = manifest.folder / "status"
        for planned in group:
            (status_dir / f"{planned.name}.json").unlink(missing_ok=True)
            self._record(manifest, record, planned, {"status": "running", "started": time.time()})
            self.pm.hook.latentrun_subjob_start(job=run.job, subjob=planned.subjob, run=record)
            print(f"> {run.job.name}/{planned.name} [{run.run_id}]", flush=True)
        spec = {
            "workspace": str(self.workspace.root), "job": run.job.name, "run_id": run.run_id,
            "device_map": run.device_map.to_json(), "status_dir": str(status_dir),
            "subjobs": [{"name": p.name, "function": p.subjob.function, "params": p.params, "reads": p.reads,
                         "writes": p.writes, "key": p.key} for p in group],
        }
        spec_path = manifest.folder / f"spec-{group[0].name}.json"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps(spec, indent=1, default=str))
        return spec, spec_path

    def collect(self, run: PlannedRun, group: list[PlannedSubJob], manifest: Manifest, record: RunRecord,
                done: dict[str, dict[str, Any]], returncode: int) -> str:
        """Read the workers' status files into the manifest; return the group's status."""
        status_dir = manifest.folder / "status"
        status = "completed"
        for planned in group:
            path = status_dir / f"{planned.name}.json"
            outcome = json.loads(path.read_text()) if path.exists() else None
            if outcome is None:
                outcome = {"status": "interrupted" if self.interrupted else "failed" if status == "completed"
                           else "not run"}
                if outcome["status"] == "failed":
                    outcome["error"] = f"worker exited with code {returncode} before finishing"
            if "started" in outcome and "finished" in outcome:
                outcome["seconds"] = round(outcome["finished"] - outcome["started"], 3)
            self._record(manifest, record, planned, outcome)
            sub_status = outcome["status"]
            if sub_status == "completed":
                CheckpointStore(checkpoint_folder(self.workspace, run.job.name, planned.name, planned.key)).clear()
                done[planned.key] = manifest.subjob(planned.name)
            elif status == "completed":
                status = sub_status if sub_status != "not run" else "failed"
            if sub_status != "not run":
                self.pm.hook.latentrun_subjob_finish(job=run.job, subjob=planned.subjob, run=record,
                                                     status=sub_status)
        (manifest.folder / f"spec-{group[0].name}.json").unlink(missing_ok=True)
        return status

    def _record(self, manifest: Manifest, record: RunRecord, planned: PlannedSubJob, values: dict[str, Any]) -> None:
        entry = manifest.subjob(planned.name)
        if values.get("status") == "running":
            entry.clear()
        entry.update(key=planned.key, function=planned.subjob.function, run_id=record.run_id,
                     outputs=planned.writes, **values)
        record.subjobs[planned.name] = dict(entry)
        manifest.save()


class LocalExecutor(Executor):
    """Each group of sub-jobs in its own Python process, or in this one (``inline``)."""

    name = "local"

    def __init__(self, *args: Any, inline: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.inline = inline

    def launch(self, spec: dict[str, Any], spec_path: Path) -> int:
        if self.inline:
            return 0 if run_spec(spec) else 1
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        command = [sys.executable, "-m", "runner.worker", str(spec_path)]
        tee = not (sys.stdout is sys.__stdout__)
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE if tee else None,
                                   stderr=subprocess.STDOUT if tee else None, text=True, bufsize=1)
        try:
            if process.stdout is not None:
                for line in process.stdout:
                    sys.stdout.write(line)
            return process.wait()
        except KeyboardInterrupt:
            process.wait()  # the child got the same SIGINT; let it clean up its temporaries
            raise
