"""Sub-job functions of the icl_strategies jobs (torch and numpy are imported here, not in __init__)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from plugins.icl_strategies import layout
from plugins.icl_strategies.data import TaskSet, eval_tasks, rng, sample_batch, train_tasks
from runner.atomic import atomic_path, write_csv, write_json
from runner.context import SubJobContext

#: per-cell columns of cells.csv beside num_tasks and step
CELL_COLUMNS = ["r_obs_id", "r_pred_id", "r_obs_ood", "r_pred_ood", "w_pred", "log_odds", "train"]


def make_data(ctx: SubJobContext) -> None:
    """The N training tasks of every grid cell and the fresh evaluation tasks."""
    p = ctx.params
    for n in p["num_tasks"]:
        train_tasks(p["setting"], p["num_dims"], n, p["seed"]).save(ctx.path(layout.tasks_file(p, n)))
    eval_tasks(p["setting"], p["num_dims"], p["num_eval_tasks"], p["seed"]).save(ctx.path(layout.eval_tasks_file(p)))
    ctx.logger.info("wrote %d task sets and %d evaluation tasks", len(p["num_tasks"]), p["num_eval_tasks"])


def train(ctx: SubJobContext) -> None:
    """One grid cell: train on N tasks, √-spaced checkpoints; resumes from ctx.checkpoint."""
    from plugins.icl_strategies.training import train_cell

    p = ctx.params
    n = p["cell_num_tasks"]
    path = train_cell(TaskSet.load(ctx.path(layout.tasks_file(p, n))), ctx.path(layout.cell_dir(p, n)),
                      ctx.checkpoint, context_length=p["context_length"],
                      mlp_expansion_factor=p["mlp_expansion_factor"], max_steps=p["max_steps"], seed=p["seed"],
                      batch_size=p["batch_size"], lr=p["lr"], warmup_steps=p["warmup_steps"],
                      num_checkpoints=p["num_checkpoints"], device=_device(ctx))
    log = json.loads(path.read_text())
    ctx.logger.info("N=%d: %d steps in %.0fs, final loss %.4f", n, p["max_steps"], log["seconds"], log["losses"][-1][1])


def _device(ctx: SubJobContext) -> str:
    """A GPU when the device map asks for one and the machine has it; else the CPU."""
    import torch

    placement = ctx.device_map.placement
    if isinstance(placement, str) and placement != "cpu" and torch.cuda.is_available():
        return placement if placement.startswith("cuda") else "cuda"
    return "cpu"


def evaluate(ctx: SubJobContext) -> None:
    """Behaviour of every checkpoint of one cell: distances to M and G, r, in distribution and on fresh tasks."""
    import torch

    from plugins.icl_strategies.behaviour import distance, relative_distance, strategies, task_loss
    from plugins.icl_strategies.hbm import complexity_bits
    from plugins.icl_strategies.modeling import load_checkpoint, predict
    from plugins.icl_strategies.training import checkpoint_folder, read_training_log

    torch.set_num_threads(1)
    p = ctx.params
    n, size, length = p["cell_num_tasks"], p["num_eval_sequences"], p["context_length"]
    taskset = TaskSet.load(ctx.path(layout.tasks_file(p, n)))
    fresh = TaskSet.load(ctx.path(layout.eval_tasks_file(p)))
    cell = ctx.path(layout.cell_dir(p, n))
    steps = read_training_log(cell)["checkpoints"]
    batches = {"id": sample_batch(taskset, size, length, rng(p["seed"], "eval-id", n)),
               "ood": sample_batch(fresh, size, length, rng(p["seed"], "eval-ood"))}
    bound = strategies(taskset)
    preds = {f"{q}_{split}": bound[q](b) for q in "MG" for split, b in batches.items()}
    loss_batch = sample_batch(taskset, p["num_loss_sequences"], length, rng(p["seed"], "loss", n))
    predictors = {q: {**complexity_bits(s.function, s.prior), "loss": float(task_loss(taskset, loss_batch, s(loss_batch)).mean())}
                  for q, s in bound.items()}
    rows: dict[str, list[dict[str, float]]] = {"id": [], "ood": []}
    outputs: dict[str, list[np.ndarray]] = {"id": [], "ood": []}
    for step in ctx.progress(steps, description=f"evaluate N={n}"):
        model = load_checkpoint(checkpoint_folder(cell, step)).to(_device(ctx))
        for split, batch in batches.items():
            out = predict(model, batch)
            outputs[split].append(out.astype(np.float32))
            m, g = preds[f"M_{split}"], preds[f"G_{split}"]
            rows[split].append({"step": step, "d_TM": float(distance(taskset.setting, out, m).mean()),
                                "d_TG": float(distance(taskset.setting, out, g).mean()),
                                "d_MG": float(distance(taskset.setting, m, g).mean()),
                                "r": float(relative_distance(taskset.setting, out, m, g).mean()),
                                "loss": float(task_loss(taskset if split == "id" else fresh, batch, out).mean())})
    record = {"setting": taskset.setting, "num_tasks": n, "steps": steps, "predictors": predictors, **rows}
    out_dir = ctx.path(layout.eval_dir(p, n))
    with atomic_path(out_dir / "predictions.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, steps=np.asarray(steps),
                                transformer_id=np.stack(outputs["id"]), transformer_ood=np.stack(outputs["ood"]),
                                **{k: v.astype(np.float32) for k, v in preds.items()})
    write_json(out_dir / "behaviour.json", record)
    last = rows["id"][-1]
    ctx.logger.info("N=%d final step %d: r=%.3f (d_TM %.4f, d_TG %.4f)", n, last["step"], last["r"], last["d_TM"],
                    last["d_TG"])


def analyse(ctx: SubJobContext) -> None:
    """Fit the hierarchical Bayesian model over the grid; write fit.json, cells.csv and the figures."""
    import torch

    from plugins.icl_strategies import plots
    from plugins.icl_strategies.analysis import analyse as run_analysis, load_grid

    torch.set_num_threads(1)
    p = ctx.params
    grid = load_grid([ctx.path(layout.eval_dir(p, n)) for n in p["num_tasks"]])
    summary, cells = run_analysis(grid, p["train_fraction"])
    out = ctx.path(layout.analysis_dir(p))
    plots.relative_distance(summary, cells, out / "relative_distance.png")
    plots.posterior_odds(summary, cells, out / "posterior_odds.png")
    plots.transition_time(summary, out / "transition_time.png")
    write_csv(out / "cells.csv", _cells_rows(summary, cells))
    write_json(out / "fit.json", summary)
    _print_summary(summary, cells)


def _cells_rows(summary: dict[str, Any], cells: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per (N, step) cell of the fitted grid."""
    return [{"num_tasks": n, "step": step, **{k: f"{float(cells[k][i, j]):.6g}" for k in CELL_COLUMNS}}
            for i, n in enumerate(summary["num_tasks"]) for j, step in enumerate(summary["steps"])]


def _print_summary(summary: dict[str, Any], cells: dict[str, np.ndarray]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['setting']}: last checkpoint (step {summary['steps'][-1]})")
    for column in ("N", "K(M) bits", "L̄(M)", "L̄(G)", "r observed", "r model", "w_M model", "transition obs.",
                   "transition model"):
        table.add_column(column, justify="right")
    fmt = lambda t: "—" if t is None else f"{t:.0f}" if t < 1e6 else f"{t:.2g}"  # noqa: E731
    start = summary["interpolation_start_step"]
    early = lambda t: f"≤ {start}" if t is not None and t <= start else fmt(t)  # noqa: E731
    for i, n in enumerate(summary["num_tasks"]):
        table.add_row(str(n), f"{summary['complexity_bits']['M'][i]:.0f}", f"{summary['predictor_loss']['M'][i]:.4f}",
                      f"{summary['predictor_loss']['G'][i]:.4f}", f"{cells['r_obs_id'][i, -1]:+.3f}",
                      f"{cells['r_pred_id'][i, -1]:+.3f}", f"{cells['w_pred'][i, -1]:.3f}",
                      early(summary["transition_step_observed"][i]), fmt(summary["transition_step_predicted"][i]))
    console = Console(width=140)
    console.print(table)
    fit, r = summary["fit"]["params"], summary["pearson_r"]
    console.print(f"fit: α={fit['alpha']:.3f} β={fit['beta']:.3f} γ={fit['gamma']:.3g} "
                  f"(loss {summary['fit']['loss']:.4g}); Pearson r in distribution: train {r['id']['train']}, "
                  f"test {r['id']['test']}; fresh tasks: {r['ood']['all_fitted_steps']}")
    console.print(f"threshold (observed): {summary['threshold_observed']}; transient N: {summary['transient_N']}")
