"""The SLURM executor (through submitit): the same runs, on a cluster.

Each group of sub-jobs (see ``process_groups``) becomes one submitit job
whose resource request comes from the job's ``DeviceMap`` and the
``--executor-param`` options. Independent groups with the same resources go
out as one job array; a group that needs another's output waits for it
(``afterok`` dependencies on SLURM). The manifest records every SLURM job
id; a preempted or timed-out job is requeued (submitit ``Checkpointable``)
and resumes: completed sub-jobs of its group are skipped and a sub-job's
``ctx.checkpoint`` survives.

``cluster=local`` runs the same path with submitit's local executor (no
SLURM needed; what the tests use). ``wait=false`` submits and returns: run
the same command again later to collect results and resubmit what failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.executor import REPO_ROOT, Executor, RunBusy, process_groups
from runner.jobs import DeviceMap, ParamError, RunRecord
from runner.manifest import Manifest, completed_subjobs
from runner.plan import PlannedRun, PlannedSubJob
from runner.worker import run_spec

import submitit  # noqa: E402 - this module is imported only for --executor slurm

# --executor-param NAME=VALUE: the options a user can set, with their types.
OPTIONS: dict[str, type] = {
    "cluster": str,            # slurm (default) | local | debug
    "partition": str,
    "time": int,               # minutes per job
    "gpus_per_task": int,      # overrides the DeviceMap's min_gpus
    "mem_gb": int,
    "cpus_per_task": int,
    "array_parallelism": int,  # at most this many array elements at once
    "account": str,
    "qos": str,
    "constraint": str,
    "wait": bool,              # wait for the jobs and collect results (default true)
    "poll": float,             # seconds between status polls
}


def parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in OPTIONS:
            raise ParamError(f"--executor-param {pair!r}: expected KEY=VALUE with KEY one of {', '.join(OPTIONS)}")
        kind = OPTIONS[key]
        try:
            options[key] = text.lower() in ("1", "true", "yes") if kind is bool else kind(text)
        except ValueError:
            raise ParamError(f"--executor-param {key}: expected {kind.__name__}, got {text!r}") from None
    return options


class SubJobTask(submitit.helpers.Checkpointable):
    """What a cluster job runs: one worker spec. Checkpointable, so preemption requeues it."""

    def __call__(self, spec: dict[str, Any]) -> str:
        if not run_spec(spec):
            raise RuntimeError(f"{spec['job']}: a sub-job failed; see its status file in {spec['status_dir']}")
        return "completed"

    def checkpoint(self, spec: dict[str, Any]) -> Any:
        """Requeue with the same spec: finished sub-jobs are skipped, checkpoints resume."""
        return submitit.helpers.DelayedSubmission(self, spec)


@dataclass
class Unit:
    """One group of sub-jobs of one run: one cluster job."""

    run: PlannedRun
    group: list[PlannedSubJob]
    manifest: Manifest
    record: RunRecord
    after: list[int] = field(default_factory=list)  # indices of units it waits for
    job: Any = None
    spec: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"


def resources(device_map: DeviceMap, options: dict[str, Any]) -> dict[str, Any]:
    """submitit parameters for one job: the DeviceMap's needs plus the user's options."""
    gpus = options.get("gpus_per_task", device_map.min_gpus)
    params: dict[str, Any] = {"timeout_min": options.get("time", 60), "gpus_per_node": gpus,
                              "tasks_per_node": 1, "nodes": 1}
    for key in ("mem_gb", "cpus_per_task"):
        if key in options:
            params[key] = options[key]
    for key in ("partition", "account", "qos", "constraint", "array_parallelism"):
        if key in options:
            params[f"slurm_{key}"] = options[key]
    return params


def slurm_job_active(job_id: str) -> bool:
    """Whether SLURM still knows the job as pending or running (``squeue``)."""
    if not job_id or not shutil.which("squeue"):
        return False
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(state in out for state in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "SUSPENDED"))


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, *args: Any, options: dict[str, Any] | None = None, log_folder: Path | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cluster_options = dict(options or {})
        self.cluster = self.cluster_options.get("cluster", "slurm")
        self.wait = self.cluster_options.get("wait", True)
        self.log_folder = log_folder or self.workspace.experiments / "slurm"
        self.waiting_runs: set[str] = set()  # runs with jobs still on the cluster from an earlier call

    def launch(self, spec: dict[str, Any], spec_path: Path) -> int:  # one group at a time: not used
        raise NotImplementedError("SlurmExecutor submits whole plans; see execute()")

    def execute(self, runs: list[PlannedRun]) -> list[RunRecord]:
        done = {} if self.options.force else completed_subjobs(self.workspace.runs)
        units: list[Unit] = []
        records: list[RunRecord] = []
        opened: list[tuple[PlannedRun, Manifest, RunRecord]] = []
        writers: dict[str, int] = {}
        for run in runs:
            try:
                manifest, record = self.open_run(run)
            except RunBusy as busy:
                print(f"  {busy}", flush=True)
                records.append(RunRecord(run.run_id, run.job.name, run.params, "", status="busy"))
                continue
            opened.append((run, manifest, record))
            records.append(record)
            previous: int | None = None
            for group in process_groups(run.subjobs):
                pending = self.pending(run, group, manifest, record, done)
                if run.run_id in self.waiting_runs:
                    break  # later sub-jobs wait for the earlier submission
                if not pending:
                    continue
                after = {writers[r] for p in pending for r in p.reads if r in writers}
                if previous is not None:
                    after.add(previous)
                units.append(Unit(run, pending, manifest, record, after=sorted(after)))
                previous = len(units) - 1
                for p in pending:
                    for w in p.writes:
                        writers[w] = previous
        try:
            self._submit_all(units)
        except Exception as err:  # sbatch refused, no SLURM here...: say so, leave no run "running"
            print(f"cluster submission failed: {type(err).__name__}: {err}", flush=True)
            for unit in units:
                if unit.status in ("pending", "submitted") and unit.job is None:
                    unit.status = "failed"
                    for planned in unit.group:
                        self._record(unit.manifest, unit.record, planned,
                                     {"status": "failed", "error": f"not submitted: {err}"})
        for run, manifest, record in opened:
            statuses = [u.status for u in units if u.run is run]
            if run.run_id in self.waiting_runs:
                statuses.append("submitted")
            failed = [s for s in statuses if s not in ("completed", "submitted")]
            status = failed[0] if failed else "submitted" if "submitted" in statuses else "completed"
            self.finish_run(run, manifest, record, status)
        if not self.wait and units:
            print(f"submitted {len(units)} cluster job(s); rerun the same command to collect the results")
        return records

    def pending(self, run: PlannedRun, group: list[PlannedSubJob], manifest: Manifest, record: RunRecord,
                done: dict[str, dict[str, Any]]) -> list[PlannedSubJob]:
        """As the base class, after collecting what jobs submitted earlier (``wait=false``) did."""
        waiting = []
        for planned in group:
            earlier = manifest.subjob(planned.name)
            if earlier.get("status") != "submitted" or earlier.get("key") != planned.key:
                continue
            status_file = manifest.folder / "status" / f"{planned.name}.json"
            if status_file.exists():
                self._record(manifest, record, planned, json.loads(status_file.read_text()))
                if manifest.subjob(planned.name)["status"] == "completed":
                    done[planned.key] = manifest.subjob(planned.name)
            elif slurm_job_active(earlier.get("slurm_job_id", "")):
                print(f"  {run.job.name}/{planned.name}: still queued or running as SLURM job "
                      f"{earlier['slurm_job_id']}", flush=True)
                waiting.append(planned)
                self.waiting_runs.add(run.run_id)
        return [p for p in super().pending(run, group, manifest, record, done) if p not in waiting]

    # -- submission ----------------------------------------------------------
    def _executor(self, device_map: DeviceMap, dependency: str = "") -> Any:
        folder = self.log_folder / "%j"
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params = resources(device_map, self.cluster_options)
        if self.cluster == "slurm":
            params["slurm_job_name"] = "latentrun"
            if dependency:  # a failed predecessor cancels the dependants instead of leaving them queued
                params["slurm_additional_parameters"] = {"dependency": dependency, "kill-on-invalid-dep": "yes"}
        else:
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        return executor

    def _submit_all(self, units: list[Unit]) -> None:
        """Submit in dependency order. On SLURM every job goes out at once and waits there
        (``afterok``); with the local cluster each wave of ready jobs runs before the next."""
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        on_slurm = self.cluster == "slurm"
        remaining = list(range(len(units)))
        while remaining:
            settled = ("submitted",) if on_slurm else ("completed", "failed", "interrupted", "not run")
            ready = [i for i in remaining if all(units[d].status in settled for d in units[i].after)]
            if not ready:  # cannot happen: dependencies point to earlier units
                raise RuntimeError("cluster plan has a dependency cycle")
            for i in ready:
                if any(units[d].status not in ("submitted", "completed") for d in units[i].after):
                    units[i].status = "not run"
                    for planned in units[i].group:
                        self._record(units[i].manifest, units[i].record, planned, {"status": "not run"})
            runnable = [i for i in ready if units[i].status == "pending"]
            self._submit(units, runnable)
            remaining = [i for i in remaining if i not in ready]
            if not on_slurm:
                self._wait_and_collect([units[i] for i in runnable])
        if on_slurm and self.wait:
            self._wait_and_collect([u for u in units if u.job is not None])

    def _submit(self, units: list[Unit], indices: list[int]) -> None:
        """Independent units with the same resources form one array; dependent ones go alone."""
        arrays: dict[str, list[int]] = {}
        for i in indices:
            unit = units[i]
            unit.spec, _ = self.prepare(unit.run, unit.group, unit.manifest, unit.record)
            dependency = ":".join(units[d].job.job_id for d in unit.after) if self.cluster == "slurm" else ""
            if dependency:
                unit.job = self._executor(unit.run.device_map, f"afterok:{dependency}").submit(SubJobTask(), unit.spec)
            else:
                arrays.setdefault(repr(resources(unit.run.device_map, self.cluster_options)), []).append(i)
        for members in arrays.values():
            executor = self._executor(units[members[0]].run.device_map)
            jobs = executor.map_array(SubJobTask(), [units[i].spec for i in members])
            for i, job in zip(members, jobs):
                units[i].job = job
        for i in indices:
            unit = units[i]
            unit.status = "submitted"
            for planned in unit.group:
                self._record(unit.manifest, unit.record, planned, {"slurm_job_id": unit.job.job_id,
                                                                   "status": "submitted"})

    def _wait_and_collect(self, units: list[Unit]) -> None:
        poll = self.cluster_options.get("poll", 1.0 if self.cluster != "slurm" else 30.0)
        try:
            while not all(unit.job.done() for unit in units):
                time.sleep(poll)
        except KeyboardInterrupt:
            self.interrupted = True
            for unit in units:
                unit.job.cancel(check=False)
        done: dict[str, dict[str, Any]] = {}
        for unit in units:
            state = getattr(unit.job, "state", "")
            code = 0 if state in ("COMPLETED", "FINISHED", "DONE") else 1
            unit.status = self.collect(unit.run, unit.group, unit.manifest, unit.record, done, code)
