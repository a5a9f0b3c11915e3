"""From CLI words to a checked plan: jobs -> runs (one per sweep point) -> sub-jobs.

Everything here is cheap and torch-free: params are resolved
(``--set`` > workspace config > job default), sub-jobs are built, and every
input of every selected job is checked before anything runs, so a user sees
all problems at once.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from runner.jobs import DeviceMap, Job, Param, ParamError, SubJob
from runner.workspace import Workspace, model_in_hf_cache

DEVICE_MAP_KEY = "device_map"


class PlanError(Exception):
    """The selection cannot run; ``problems`` lists every reason, each with what to do."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class PlannedSubJob:
    subjob: SubJob
    params: dict[str, Any]
    key: str  # identity for resume: function + params + outputs
    reads: list[str]
    writes: list[str]

    @property
    def name(self) -> str:
        return self.subjob.name


@dataclass
class PlannedRun:
    job: Job
    params: dict[str, Any]
    device_map: DeviceMap
    run_id: str
    subjobs: list[PlannedSubJob] = field(default_factory=list)


def stable_hash(data: Any, length: int = 10) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# -- job selection -----------------------------------------------------------


def expand_jobs(names: Sequence[str], jobs: Mapping[str, Job]) -> list[Job]:
    """Resolve names (and groups, recursively) to concrete jobs, in order."""
    unknown = [n for n in names if n not in jobs]
    if unknown:
        raise PlanError([unknown_job_message(n, jobs) for n in unknown])
    out: list[Job] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise PlanError([f"job group cycle: {' -> '.join(trail + (name,))}"])
        if name not in jobs:
            raise PlanError([f"group {trail[-1]!r} names {unknown_job_message(name, jobs)}"])
        job = jobs[name]
        if job.is_group:
            for member in job.group:
                visit(member, trail + (name,))
        elif job not in out:
            out.append(job)

    for name in names:
        visit(name, ())
    return out


def unknown_job_message(name: str, jobs: Mapping[str, Job]) -> str:
    close = difflib.get_close_matches(name, list(jobs), n=5, cutoff=0.5)
    close += [j for j in jobs if name in j and j not in close][: 5 - len(close)]
    hint = f"; did you mean: {', '.join(close)}?" if close else "; see --list"
    return f"unknown job {name!r}{hint}"


# -- params ----------------------------------------------------------------


def parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}`` (text; typed per job later)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PlanError([f"--set {pair!r}: expected key=value"])
        out[key.strip()] = value
    return out


def resolve_params(job: Job, sets: Mapping[str, str], workspace: Workspace) -> list[tuple[dict[str, Any], DeviceMap]]:
    """All sweep points of one job: a list of (params, device map).

    ``--set k=a,b`` on a scalar param sweeps; on a list param it is the list.
    """
    params = job.defaults()
    device_map: Any = job.device_map
    for key, value in workspace.defaults_for(job.name).items():
        if key == DEVICE_MAP_KEY:
            device_map = value
        elif key in job.params:
            params[key] = _coerce(job.params[key], key, value, f"{workspace.root}/latentrun.toml")
    sweep: dict[str, list[Any]] = {}
    for key, text in sets.items():
        if key == DEVICE_MAP_KEY:
            device_map = text
            continue
        if key not in job.params:
            continue  # checked across all selected jobs by check_set_keys
        param = job.params[key]
        if param.kind in (list, tuple, dict) or "," not in text:
            params[key] = param.parse(key, text)
        else:
            sweep[key] = [param.parse(key, part) for part in text.split(",")]
    resolved_map = DeviceMap.parse(device_map)
    points = []
    for combo in itertools.product(*sweep.values()) if sweep else [()]:
        point = dict(params)
        point.update(zip(sweep.keys(), combo))
        points.append((point, resolved_map))
    return points


def _coerce(param: Param, key: str, value: Any, where: str) -> Any:
    kind = param.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if param.default is not None and not isinstance(value, kind):
        raise ParamError(f"{where}: {key}={value!r} should be {kind.__name__}")
    return param.check(key, value)


def check_set_keys(sets: Mapping[str, str], jobs: Sequence[Job]) -> None:
    """A ``--set`` key that no selected job has is a typo: say which keys exist."""
    known = {k for job in jobs for k in job.params} | {DEVICE_MAP_KEY}
    problems = []
    for key in sets:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"--set {key}: no selected job has this param{hint}; params: {', '.join(sorted(known))}")
    if problems:
        raise PlanError(problems)


# -- planning ----------------------------------------------------------------


def build_plan(job_names: Sequence[str], jobs: Mapping[str, Job], workspace: Workspace,
               sets: Mapping[str, str] | None = None, only_subjobs: Sequence[str] = ()) -> list[PlannedRun]:
    sets = dict(sets or {})
    selected = expand_jobs(job_names, jobs)
    check_set_keys(sets, selected)
    runs: list[PlannedRun] = []
    problems: list[str] = []
    for job in selected:
        try:
            points = resolve_params(job, sets, workspace)
        except (ParamError, ValueError) as err:
            problems.append(f"job {job.name}: {err}")
            continue
        for params, device_map in points:
            run_id = f"{job.name}-{stable_hash(params, 8)}"
            run = PlannedRun(job=job, params=params, device_map=device_map, run_id=run_id)
            try:
                run.subjobs = _plan_subjobs(job, params, only_subjobs)
            except (ValueError, KeyError, TypeError) as err:
                problems.append(f"job {job.name}: cannot build its sub-jobs: {err}")
                continue
            runs.append(run)
    if problems:
        raise PlanError(problems)
    return runs


def _plan_subjobs(job: Job, params: dict[str, Any], only: Sequence[str]) -> list[PlannedSubJob]:
    built = job.build_subjobs(dict(params))
    if only:
        names = [s.name for s in built]
        missing = [n for n in only if n not in names]
        if missing and len(only) == len(missing):
            raise ValueError(f"no sub-job named {', '.join(missing)}; it has: {', '.join(names)}")
        built = [s for s in built if s.name in only]
    planned = []
    for sub in built:
        merged = {**params, **sub.params}
        sub.params = merged
        reads, writes = sub.resolved_reads(), sub.resolved_writes()
        used = merged if sub.uses is None else {k: merged[k] for k in sub.uses if k in merged}
        key = stable_hash({"function": sub.function, "params": used, "writes": writes}, 16)
        planned.append(PlannedSubJob(subjob=sub, params=merged, key=key, reads=reads, writes=writes))
    return planned


# -- validation --------------------------------------------------------------


def validate(runs: Sequence[PlannedRun], workspace: Workspace, jobs: Mapping[str, Job],
             gpus: GpuInfo | None = None, check_devices: bool = True) -> None:
    """Check inputs, artifacts and device maps of every run; raise every problem at once."""
    problems: list[str] = []
    produced: set[str] = set()
    for run in runs:
        for rel in run.job.resolved_inputs(run.params):
            if not _input_exists(workspace, rel):
                problems.append(f"job {run.job.name}: missing {workspace.path(rel)}{_input_hint(rel, workspace)}")
        for planned in run.subjobs:
            for rel in planned.reads:
                if rel not in produced and not workspace.path(rel).exists():
                    problems.append(f"job {run.job.name}, sub-job {planned.name}: missing {workspace.path(rel)}"
                                    f"{_producer_hint(rel, jobs)}")
            produced.update(planned.writes)
        if check_devices:
            problems += _device_problems(run, gpus)
    if problems:
        raise PlanError(sorted(set(problems), key=problems.index))


def _input_exists(workspace: Workspace, rel: str) -> bool:
    if workspace.path(rel).exists():
        return True
    parts = rel.split("/")
    return parts[0] == "transformers" and model_in_hf_cache("/".join(parts[1:3]))


def _input_hint(rel: str, workspace: Workspace) -> str:
    parts = rel.split("/")
    if parts[0] == "transformers" and len(parts) > 1:
        return (f" (model {parts[1]!r}: put its config, tokenizer and safetensors there, or map the name to a "
                f"folder under [models] in {workspace.root / 'latentrun.toml'})")
    if parts[0] == "datasets":
        return " (data set: put it there in its published format)"
    return ""


def _producer_hint(rel: str, jobs: Mapping[str, Job]) -> str:
    producers = []
    for job in jobs.values():
        if job.is_group:
            continue
        try:
            subjobs = job.build_subjobs(job.defaults())
        except Exception:  # a job that cannot build with defaults cannot be suggested
            continue
        for sub in subjobs:
            if any(_template_matches(t, rel) for t in sub.writes):
                producers.append(f"{job.name} (sub-job {sub.name})")
    return f"; it is written by: {', '.join(producers[:5])} - select that job first" if producers else ""


def _template_matches(template: str, path: str) -> bool:
    pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
    return re.fullmatch(pattern, path) is not None


# -- machine -----------------------------------------------------------------


@dataclass
class GpuInfo:
    count: int
    memory_gb: list[float]


def detect_gpus() -> GpuInfo:
    """GPUs of this machine from ``nvidia-smi`` (no torch import in the runner)."""
    if not shutil.which("nvidia-smi"):
        return GpuInfo(0, [])
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return GpuInfo(0, [])
    memory = [float(line) / 1024 for line in out.split() if line.strip()]
    return GpuInfo(len(memory), memory)


def _device_problems(run: PlannedRun, gpus: GpuInfo | None) -> list[str]:
    dm = run.device_map
    needs_cuda = dm.min_gpus > 0 or (isinstance(dm.placement, str) and dm.placement.startswith("cuda"))
    if not needs_cuda:
        return []
    gpus = gpus or detect_gpus()
    problems = []
    wanted = max(dm.min_gpus, 1)
    if gpus.count < wanted:
        problems.append(f"job {run.job.name}: device map '{dm.describe()}' needs {wanted} GPU(s), this machine has "
                        f"{gpus.count}; run elsewhere (--executor slurm) or --set device_map=cpu")
    elif dm.min_gpu_memory_gb and min(gpus.memory_gb[:wanted]) < dm.min_gpu_memory_gb:
        problems.append(f"job {run.job.name}: needs {dm.min_gpu_memory_gb:g} GB per GPU, the smallest here has "
                        f"{min(gpus.memory_gb):.1f} GB")
    return problems
