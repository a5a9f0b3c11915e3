"""Entry point ``run_experiment``: auxiliary task demands (Hu & Frank, COLM 2024).

The same ability measured with a low-demand method (forced choice by
log-prob, direct string probability) and a high-demand one (free
generation, a metalinguistic prompt); the gap is expected to shrink with
model size and training. Jobs (see docs/plugins/run_experiment.md):

* ``run_experiment`` — one model × task (× condition × revision) from a YAML
  config (``--set config=...``) or plain params; ``--set revision=a,b``
  sweeps checkpoints.
* ``task_demands`` and its presets ``task_demands_<task>`` — a grid of
  models × tasks × conditions × revisions, then a summary table and the
  paper's plots (accuracy vs model size / training tokens).
* ``make_configs`` — the YAML configs of a grid, as the seed's make_configs.py.
* ``import_digit_mat`` — the published digit-matrix ``.npz`` to JSON, once.

This module imports neither torch nor ``models``.
"""

from __future__ import annotations

from typing import Any

from plugins.run_experiment import layout
from plugins.run_experiment.config import CONFIG_KEYS, Settings, check, resolve
from plugins.run_experiment.stimuli import CRT_CONDITIONS, DEFAULT_FILES, TASKS
from runner.hookspecs import hookimpl
from runner.jobs import Job, Param, SubJob

STEPS = "plugins.run_experiment.steps"
EXAMPLE_MODELS = ["tiny-demands-s", "tiny-demands-m"]
_USES = [*CONFIG_KEYS, "seed"]


def _shared() -> dict[str, Param]:
    return {
        "accelerate": Param(False, "spread the model over the devices (device_map auto), as the seed's --accelerate",
                            bool),
        "dtype": Param("float32", "weights dtype", str, choices=["float32", "bfloat16", "float16", "auto"]),
        "max_new_tokens": Param(0, "greedy generation length; 0: 10 for digit_mat, 100 for crt (the seed's)", int),
        "batch_size": Param(8, "prompts per forward", int),
        "max_per_type": Param(40, "digit_mat: the first N problems of each type, as published (0: all)", int),
        "limit": Param(0, "only the first N items (0: all) — for a quick look", int),
        "seed": Param(0, "seed of the bootstrap intervals", int),
    }


def _evaluate_subjob(s: Settings, name: str = "evaluate", group: str = "") -> SubJob:
    files = layout.result_files(s)
    return SubJob(name, f"{STEPS}:evaluate", params=s.as_params(), reads=[s.stimuli] + layout.model_reads(s),
                  writes=[files["csv"], files["summary"]], uses=_USES, process_group=group)


def _single(params: dict[str, Any]) -> list[SubJob]:
    defaults = {k: p.default for k, p in _single_params().items()}
    return [_evaluate_subjob(resolve(params, defaults))]


def _single_params() -> dict[str, Param]:
    return {
        "config": Param("", "YAML config (model, task, condition, revision, accelerate, stimuli, …); "
                            "relative to the directory you run from", str),
        "model": Param("", "model under W/transformers (or an owner/name in the local Hugging Face cache)", str),
        "task": Param("", "the task", str, choices=["", *TASKS]),
        "condition": Param("", "crt only: crt1 (prices), crt2 (machines), crt3 (doubling)", str,
                           choices=["", *CRT_CONDITIONS]),
        "revision": Param("", "training checkpoint: W/transformers/<model>/revisions/<revision> (or a Hub "
                              "revision in the cache); empty or main: the final model", str),
        "stimuli": Param("", "stimulus file under W (default: the task's published file, see the docs)", str),
        **_shared(),
    }


def _grid(params: dict[str, Any], tasks: list[str] | None = None) -> list[SubJob]:
    tasks = tasks or params["tasks"]
    if not params["models"] or not tasks:
        raise ValueError("give at least one model and one task")
    subjobs, reads = [], []
    for model in params["models"]:
        for revision in params["revisions"] or ["main"]:
            for task in tasks:
                for condition in (params["conditions"] if task == "crt" else [""]):
                    s = check({**{k: params.get(k) for k in CONFIG_KEYS}, "model": model, "task": task,
                               "condition": condition, "revision": revision, "stimuli": ""})
                    label = f"{task}{'-' + condition if condition else ''}@{s.model_slug}"
                    label += f"@{s.revision}" if s.revision else ""
                    sub = _evaluate_subjob(s, label, group=f"{model}@{s.revision}")
                    subjobs.append(sub)
                    reads += sub.writes
    folder = layout.grid_folder({**params, "tasks": tasks}, tasks)
    files = layout.summary_files(folder, tasks)
    subjobs.append(SubJob("report", f"{STEPS}:report", params={"_report_keys": list(files)}, reads=reads,
                          writes=list(files.values())))
    return subjobs


def _grid_params(tasks: list[str] | None) -> dict[str, Param]:
    params = {
        "models": Param(list(EXAMPLE_MODELS), "models under W/transformers", list),
        "revisions": Param(["main"], "checkpoints of every model (main: the final one)", list),
        "conditions": Param(list(CRT_CONDITIONS), "CRT conditions", list),
        **_shared(),
    }
    if tasks is None:
        params["tasks"] = Param(list(TASKS), f"tasks: {', '.join(TASKS)}", list)
    return params


def _check_grid(params: dict[str, Any]) -> None:
    bad = [t for t in params.get("tasks", []) if t not in TASKS]
    bad += [c for c in params.get("conditions", []) if c not in CRT_CONDITIONS]
    if bad:
        raise ValueError(f"unknown task or condition {', '.join(bad)}; tasks: {', '.join(TASKS)}, "
                         f"conditions: {', '.join(CRT_CONDITIONS)}")


def _grid_builder(tasks: list[str] | None):
    def build(params: dict[str, Any]) -> list[SubJob]:
        _check_grid(params)
        return _grid(params, tasks)
    return build


def _make_configs(params: dict[str, Any]) -> list[SubJob]:
    _check_grid(params)
    return [SubJob("write", f"{STEPS}:make_configs", writes=[f"{params['out_dir']}/index.json"])]


def _import_digit_mat(params: dict[str, Any]) -> list[SubJob]:
    from pathlib import Path

    npz = params["npz_path"]
    if not npz:
        raise ValueError("name the published archive: --set npz_path=/path/to/all_problems.npz")
    if not Path(npz).expanduser().is_file():
        raise ValueError(f"npz_path {npz} does not exist")
    return [SubJob("import", f"{STEPS}:import_digit_mat", writes=["{out}"])]


@hookimpl
def latentrun_jobs() -> list[Job]:
    jobs = [
        Job(name="run_experiment",
            description="Task demands: one model × task (× condition × revision), from a YAML config or params",
            params=_single_params(), subjobs=_single),
        Job(name="task_demands",
            description="Task demands: models × tasks × conditions × revisions, summary table and plots",
            params=_grid_params(None), subjobs=_grid_builder(None)),
        Job(name="make_configs",
            description="Write the YAML configs of a models × tasks grid (as the seed's make_configs.py)",
            params={"models": Param(list(EXAMPLE_MODELS), "models", list),
                    "tasks": Param(list(TASKS), "tasks", list),
                    "accelerate_models": Param([], "models whose configs set accelerate: true", list),
                    "out_dir": Param(f"{layout.ROOT}/configs", "folder under W for <task>/[<condition>/]<model>.yaml",
                                     str)},
            subjobs=_make_configs),
        Job(name="import_digit_mat",
            description="Convert the published digit-matrix all_problems.npz (pickled) to JSON, once",
            params={"npz_path": Param("", "the published all_problems.npz (the only file latentrun unpickles)", str),
                    "out": Param(DEFAULT_FILES["digit_mat"], "JSON file under W", str)},
            subjobs=_import_digit_mat),
    ]
    for task in TASKS:
        jobs.append(Job(name=f"task_demands_{task}",
                        description=f"Task demands on {task}: low- vs high-demand method per model and revision",
                        params=_grid_params([task]), subjobs=_grid_builder([task])))
    return jobs
