"""Entry point ``icl_strategies``: in-context learning strategies emerge rationally (Wurgaft et al. 2025).

Jobs (see docs/plugins/icl_strategies.md):

* ``icl_strategies`` — generate the tasks, train a grid of small GPT-NeoX
  transformers over N (one resumable sub-job per cell), measure where each
  checkpoint sits between the memorizing (M) and generalizing (G) Bayesian
  predictors, and fit the hierarchical Bayesian model that explains it.
  Defaults: the categorical (balls & urns) grid measured on a 2-core CPU.
* ``icl_strategies_paper`` — the same job at the paper's scale (T = 128,
  100k steps, N up to 4096): device map ``auto`` (a GPU when there is one).

This module imports neither torch, numpy nor ``models``; the sub-job
functions in ``plugins.icl_strategies.steps`` do, when they run.
"""

from __future__ import annotations

from typing import Any

from runner.hookspecs import hookimpl
from runner.jobs import DeviceMap, Job, Param, ParamError, SubJob
from plugins.icl_strategies import layout

SETTINGS = ["categorical-sequence", "linear-regression", "classification"]
STEPS = "plugins.icl_strategies.steps"
EXAMPLE_GRID = [4, 8, 16, 32, 64, 128, 256, 512]
TRAIN_USES = ["setting", "num_dims", "context_length", "mlp_expansion_factor", "max_steps", "seed", "batch_size",
              "lr", "warmup_steps", "num_checkpoints", "cell_num_tasks"]
EVAL_USES = TRAIN_USES + ["num_eval_sequences", "num_eval_tasks", "num_loss_sequences"]


def _params(**defaults: Any) -> dict[str, Param]:
    values = {"setting": "categorical-sequence", "num_dims": 8, "num_tasks": list(EXAMPLE_GRID),
              "context_length": 32, "mlp_expansion_factor": 4.0, "max_steps": 8000, "seed": 0, "batch_size": 64,
              "lr": 1e-3, "warmup_steps": 100, "num_checkpoints": 30, **defaults}
    return {
        "setting": Param(values["setting"], "task family", str, choices=SETTINGS),
        "num_dims": Param(values["num_dims"], "D: colours (categorical) or input dimensions", int),
        "num_tasks": Param(values["num_tasks"], "the grid over N, the number of training tasks (powers of 2)", list),
        "context_length": Param(values["context_length"], "T: tokens (categorical) or exemplars per sequence", int),
        "mlp_expansion_factor": Param(values["mlp_expansion_factor"], "MLP width = 64 × this", float),
        "max_steps": Param(values["max_steps"], "training steps per cell", int),
        "seed": Param(values["seed"], "seed of tasks, initialisation, batches and evaluation", int),
        "batch_size": Param(values["batch_size"], "sequences per step (fresh every step)", int),
        "lr": Param(values["lr"], "AdamW learning rate (constant after warmup)", float),
        "warmup_steps": Param(values["warmup_steps"], "linear warmup steps", int),
        "num_checkpoints": Param(values["num_checkpoints"], "checkpoints per cell, evenly spaced in √step", int),
        "num_eval_sequences": Param(256, "sequences per checkpoint evaluation (in distribution and fresh tasks)",
                                    int),
        "num_eval_tasks": Param(500, "fresh tasks from the true prior (out-of-distribution evaluation)", int),
        "num_loss_sequences": Param(4000, "sequences for each predictor's average loss L̄(Q)", int),
        "train_fraction": Param(0.8, "fit on this fraction of checkpoints × N values, test on the rest", float),
    }


def _check(p: dict[str, Any]) -> None:
    """Every bad value at once, before anything runs."""
    problems = []
    grid = p["num_tasks"]
    if len(grid) < 2 or any(n < 1 for n in grid) or sorted(set(grid)) != list(grid):
        problems.append(f"num_tasks must be at least two increasing positive integers, got {grid}")
    for key, low in (("num_dims", 1), ("max_steps", 1), ("batch_size", 1), ("num_eval_sequences", 2),
                     ("num_eval_tasks", 1), ("num_loss_sequences", 1), ("warmup_steps", 0), ("num_checkpoints", 3),
                     ("context_length", 2)):
        if p[key] < low:
            problems.append(f"{key} must be >= {low}, got {p[key]}")
    if p["num_checkpoints"] > p["max_steps"]:
        problems.append(f"num_checkpoints={p['num_checkpoints']} > max_steps={p['max_steps']}")
    if p["mlp_expansion_factor"] <= 0 or p["lr"] <= 0:
        problems.append("mlp_expansion_factor and lr must be > 0")
    if not 0 < p["train_fraction"] < 1:
        problems.append(f"train_fraction must be in (0, 1), got {p['train_fraction']}")
    if problems:
        raise ParamError("icl_strategies: " + "; ".join(problems))


def _subjobs(p: dict[str, Any]) -> list[SubJob]:
    _check(p)
    grid = p["num_tasks"]
    subjobs = [SubJob("data", f"{STEPS}:make_data",
                      writes=[layout.tasks_file(p, n) for n in grid] + [layout.eval_tasks_file(p)],
                      uses=["setting", "num_dims", "num_tasks", "seed", "num_eval_tasks"])]
    for n in grid:
        subjobs.append(SubJob(f"train@N={n}", f"{STEPS}:train", params={"cell_num_tasks": n},
                              reads=[layout.tasks_file(p, n)], writes=[f"{layout.cell_dir(p, n)}/training_log.json"],
                              process_group="icl", uses=TRAIN_USES))
    eval_writes = []
    for n in grid:
        writes = [f"{layout.eval_dir(p, n)}/{name}" for name in ("behaviour.json", "predictions.npz")]
        eval_writes += writes
        subjobs.append(SubJob(f"evaluate@N={n}", f"{STEPS}:evaluate", params={"cell_num_tasks": n},
                              reads=[layout.tasks_file(p, n), layout.eval_tasks_file(p),
                                     f"{layout.cell_dir(p, n)}/training_log.json"],
                              writes=writes, process_group="icl", uses=EVAL_USES))
    subjobs.append(SubJob("analyse", f"{STEPS}:analyse", reads=eval_writes,
                          writes=[f"{layout.analysis_dir(p)}/{name}" for name in layout.ANALYSIS_FILES]))
    return subjobs


@hookimpl
def latentrun_jobs() -> list[Job]:
    return [
        Job(name="icl_strategies",
            description="ICL strategies: train a grid over N tasks, fit the memorizing/generalizing Bayesian model",
            params=_params(), subjobs=_subjobs),
        Job(name="icl_strategies_paper",
            description="ICL strategies at the paper's scale (T=128, 100k steps, N 4..4096; GPU if any)",
            params=_params(context_length=128, max_steps=100_000, lr=5e-4, warmup_steps=5000, num_checkpoints=100,
                           num_tasks=[2 ** i for i in range(2, 13)]),
            subjobs=_subjobs, device_map=DeviceMap("auto")),
    ]
