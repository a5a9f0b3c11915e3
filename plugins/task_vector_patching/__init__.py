"""Entry point ``task_vector_patching``: in-context learning task vectors (Hendel, Geva & Globerson 2023).

Jobs (see docs/plugins/task_vector_patching.md):

* ``task_vectors_main`` — baseline, ICL and task-vector accuracy per task; layer
  sweep on dev, test at the chosen layer; table + accuracy-by-layer figure.
* ``task_vectors_conflicting`` — demos of task A, task vector of task B patched in.
* ``task_vectors_robustness`` — task vectors from many demo sets: within- vs
  between-task distances and a 2-D projection.
* ``task_vectors_paper`` — the paper's 18 tasks on several models, next to the
  published means.

This module imports neither torch nor ``models``; the sub-job functions in
``plugins.task_vector_patching.steps`` do, when they run.
"""

from __future__ import annotations

from typing import Any

from runner.hookspecs import hookimpl
from runner.jobs import DeviceMap, Job, Param, SubJob
from plugins.task_vector_patching import layout
from plugins.task_vector_patching.tasks import (
    ALGORITHMIC, DEFAULT_FORMAT, DEFAULT_SEPARATOR, PAPER_TASKS, spec_of, task_file_paths,
)

EXAMPLE_MODEL = "tiny-icl-llama"
STEPS = "plugins.task_vector_patching.steps"
_EXTRACT_USES = ["model", "tasks", "num_demos", "num_dummy_queries", "dev_size", "test_size", "seed",
                 "prompt_format", "separator", "dtype"]


def _common(num_demos: int, tasks: list[str]) -> dict[str, Param]:
    return {
        "model": Param(EXAMPLE_MODEL, "model under W/transformers (or mapped in latentrun.toml)", str),
        "tasks": Param(list(tasks), "task names (generated algorithmic ones, or files under "
                                    "W/datasets/task_vectors/<family>/<task>.json)", list),
        "num_demos": Param(num_demos, "demonstrations per prompt", int),
        "num_dummy_queries": Param(2, "dummy queries θ is averaged over", int),
        "patch_mode": Param("replace", "replace: h <- θ (as published); add: h <- h + scale·(θ_task − θ_mean)",
                            str, choices=["replace", "add"]),
        "scale": Param(1.0, "scale of the additive task vector (patch_mode=add)", float),
        "seed": Param(41, "seed of the dataset sampling and the bootstrap", int),
        "batch_size": Param(32, "prompts per forward", int),
        "num_processes": Param(1, "data-parallel extraction: N processes take every N-th task (one GPU each "
                                  "when the machine has N)", int),
        "prompt_format": Param(DEFAULT_FORMAT, "one demonstration; must end with {y}", str),
        "separator": Param(DEFAULT_SEPARATOR, "between demonstrations", str),
        "dtype": Param("float32", "float32, bfloat16, float16", str, choices=["float32", "bfloat16", "float16", "auto"]),
    }


def _check(params: dict[str, Any]) -> None:
    from plugins.task_vector_patching.tasks import check_format

    check_format(params["prompt_format"])
    for name in params.get("tasks", []):
        spec_of(name)  # unknown task: a clear error at plan time
    for key in ("num_demos", "num_dummy_queries", "dev_size", "test_size", "num_sets", "batch_size"):
        if key in params and params[key] < (0 if key == "num_demos" else 1):
            raise ValueError(f"{key} must be positive, got {params[key]}")
    if params["patch_mode"] == "add" and len(params.get("tasks") or ["", ""]) < 2:
        raise ValueError("patch_mode=add centres on the mean over tasks: give at least 2 tasks")


def _main_subjobs(params: dict[str, Any], suffix: str = "", group: str = "") -> list[SubJob]:
    _check(params)
    tasks = params["tasks"]
    extract_writes, sweep_writes = [], []
    for name in tasks:
        extract_writes += list(layout.task_files(params, name).values())
        sweep_writes.append(layout.sweep_file(params, name))
    extra = {"model": params["model"]} if suffix else {}
    reads_model = [f"transformers/{params['model']}"] if suffix else []
    group = group or f"model:{params['model']}"
    return [
        SubJob(f"extract{suffix}", f"{STEPS}:extract", params=dict(extra), uses=_EXTRACT_USES,
               reads=reads_model + task_file_paths(tasks), writes=extract_writes, process_group=group),
        SubJob(f"sweep{suffix}", f"{STEPS}:sweep", params=dict(extra),
               uses=_EXTRACT_USES + ["patch_mode", "scale"], reads=extract_writes, writes=sweep_writes,
               process_group=group),
        SubJob(f"report{suffix}", f"{STEPS}:report", params=dict(extra),
               uses=_EXTRACT_USES + ["patch_mode", "scale"], reads=extract_writes + sweep_writes,
               writes=list(layout.report_files(params).values())),
    ]


def _conflicting_subjobs(params: dict[str, Any]) -> list[SubJob]:
    tasks = []
    for pair in params["pairs"]:
        tasks += [t for t in pair.split(":") if t]
    _check({**params, "tasks": tasks})
    return [SubJob("overriding", f"{STEPS}:conflicting", reads=task_file_paths(dict.fromkeys(tasks)),
                   writes=list(layout.conflicting_files(params).values()))]


def _robustness_subjobs(params: dict[str, Any]) -> list[SubJob]:
    _check({**params, "patch_mode": "replace"})
    files = layout.robustness_files(params)
    return [
        SubJob("extract", f"{STEPS}:robustness_extract", reads=task_file_paths(params["tasks"]),
               writes=[files["vectors"]], uses=["model", "tasks", "num_demos", "num_dummy_queries", "num_sets",
                                                "seed", "prompt_format", "separator", "dtype"]),
        SubJob("analyse", f"{STEPS}:robustness_analyse", reads=[files["vectors"]],
               writes=[files["json"], files["projection"], files["distances"]]),
    ]


def _paper_subjobs(params: dict[str, Any]) -> list[SubJob]:
    subjobs: list[SubJob] = []
    reads = []
    for model in params["models"]:
        q = {**params, "model": model}
        built = _main_subjobs(q, suffix=f"@{model}", group=f"model:{model}")
        subjobs += built
        reads += built[-1].writes
    subjobs.append(SubJob("compare", f"{STEPS}:compare", reads=reads, writes=list(layout.paper_files(params).values())))
    return subjobs


@hookimpl
def latentrun_jobs() -> list[Job]:
    main_params = {**_common(5, ALGORITHMIC),
                   "dev_size": Param(50, "dev datasets per task (layer choice)", int),
                   "test_size": Param(50, "test datasets per task (baseline, ICL, task vector)", int)}
    conflicting_params = {**_common(4, []),
                          "pairs": Param(list(layout.DEFAULT_PAIRS), "original:overriding task pairs", list),
                          "dev_size": Param(50, "dev datasets of the overriding task (its layer choice)", int),
                          "test_size": Param(100, "conflicting prompts per pair", int)}
    del conflicting_params["tasks"]
    robustness_params = {**_common(4, ALGORITHMIC),
                         "num_sets": Param(50, "demonstration sets (task vectors) per task", int),
                         "layer": Param("middle", "layer of the distance histogram and projection: index or 'middle'",
                                        str),
                         "projection": Param("tsne", "2-D projection", str, choices=["tsne", "pca"])}
    for key in ("patch_mode", "scale"):
        del robustness_params[key]
    paper_params = {**main_params,
                    "models": Param(["gpt-j-6b", "llama-7b", "pythia-6.9b"], "models to compare", list),
                    "tasks": Param(list(PAPER_TASKS), "the paper's 18 tasks", list),
                    "dtype": Param("float16", "as in the paper", str,
                                   choices=["float32", "bfloat16", "float16", "auto"])}
    del paper_params["model"]
    return [
        Job(name="task_vectors_main",
            description="ICL task vectors: baseline / ICL / patched task-vector accuracy per task and layer",
            params=main_params, subjobs=_main_subjobs, inputs=["transformers/{model}"]),
        Job(name="task_vectors_conflicting",
            description="ICL task vectors: demos of task A with task B's vector patched in (overriding)",
            params=conflicting_params, subjobs=_conflicting_subjobs, inputs=["transformers/{model}"]),
        Job(name="task_vectors_robustness",
            description="ICL task vectors: within- vs between-task distances and a 2-D projection",
            params=robustness_params, subjobs=_robustness_subjobs, inputs=["transformers/{model}"]),
        Job(name="task_vectors_paper",
            description="ICL task vectors: the paper's 18-task table for several models vs the published means",
            params=paper_params, subjobs=_paper_subjobs, device_map=DeviceMap("auto")),
    ]
