"""From evaluated grid cells to the paper's claims: fit, correlation, threshold, transience.

Input: one ``behaviour.json`` + ``predictions.npz`` per N (written by the
evaluate step). The hierarchical model is fitted in distribution on the
checkpoints past the interpolation threshold, on the first ``train_fraction``
of those checkpoints × the first ``train_fraction`` of the N values (the
paper's split: the rest tests extrapolation to later steps and larger N),
and scored on every cell, in distribution and on fresh tasks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.icl_strategies import hbm
from plugins.icl_strategies.behaviour import relative_distance

INTERPOLATION_MARGIN = {"categorical-sequence": 0.2, "classification": 0.2, "linear-regression": 0.1}


@dataclass
class Grid:
    """Everything the analysis needs, stacked over N (axis 0) and checkpoint steps (axis 1)."""

    setting: str
    num_tasks: np.ndarray
    steps: np.ndarray
    r_id: np.ndarray
    r_ood: np.ndarray
    target: dict[str, np.ndarray]  # "id"/"ood": [nN, nS, B, ...] transformer predictions
    pred_m: dict[str, np.ndarray]  # [nN, B, ...]
    pred_g: dict[str, np.ndarray]
    complexity: np.ndarray  # [nN, 2] bits (M, G)
    loss: np.ndarray  # [nN, 2] average in-distribution loss (M, G)

    def inputs(self) -> hbm.ModelInputs:
        return hbm.ModelInputs(self.num_tasks, self.steps, self.complexity, self.loss)


def load_grid(eval_dirs: list[Path]) -> Grid:
    """Stack the evaluate step's outputs of several N (all with the same checkpoint schedule)."""
    records = [json.loads((d / "behaviour.json").read_text()) for d in eval_dirs]
    arrays = [np.load(d / "predictions.npz") for d in eval_dirs]
    steps = np.asarray(records[0]["steps"])
    for record in records[1:]:
        if list(record["steps"]) != list(steps):
            raise ValueError("the grid's cells have different checkpoint steps; train them with the same schedule")
    stack = lambda key: np.stack([a[key] for a in arrays])  # noqa: E731
    return Grid(
        setting=records[0]["setting"],
        num_tasks=np.asarray([r["num_tasks"] for r in records]),
        steps=steps,
        r_id=np.asarray([[row["r"] for row in r["id"]] for r in records]),
        r_ood=np.asarray([[row["r"] for row in r["ood"]] for r in records]),
        target={"id": stack("transformer_id"), "ood": stack("transformer_ood")},
        pred_m={"id": stack("M_id"), "ood": stack("M_ood")},
        pred_g={"id": stack("G_id"), "ood": stack("G_ood")},
        complexity=np.asarray([[r["predictors"][q]["bits"] for q in "MG"] for r in records], dtype=float),
        loss=np.asarray([[r["predictors"][q]["loss"] for q in "MG"] for r in records], dtype=float),
    )


def _mixture(w: np.ndarray, m: np.ndarray, g: np.ndarray) -> np.ndarray:
    shape = w.shape + (1,) * (m.ndim - 1)
    return w.reshape(shape) * m[:, None] + (1 - w.reshape(shape)) * g[:, None]


def interpolation_start(grid: Grid, margin: float | None = None) -> int:
    """First checkpoint index from which every N's predictions stay close to some M/G mixture.

    Early checkpoints (near the initialisation) are neither M nor G; the paper
    fits only past the step where the distance to the best mixture falls
    below min + margin·range for every N. "Stay": the initialisation itself
    can sit close to G's early-position predictions (both near uniform), so
    the start is after the last checkpoint above the line. At least two
    checkpoints are kept.
    """
    import torch

    margin = INTERPOLATION_MARGIN[grid.setting] if margin is None else margin
    target = torch.as_tensor(grid.target["id"])
    best = None
    for w in np.linspace(0, 1, 21):
        mix = torch.as_tensor(_mixture(np.full(grid.r_id.shape, w), grid.pred_m["id"], grid.pred_g["id"]))
        d = hbm.divergence(grid.setting, target, mix, torch).numpy()
        best = d if best is None else np.minimum(best, d)
    starts = []
    for row in best:
        above = np.nonzero(row > row.min() + margin * (row.max() - row.min()))[0]
        starts.append(int(above[-1]) + 1 if len(above) else 0)
    return min(max(starts), len(grid.steps) - 2)


def split_mask(grid: Grid, start: int, train_fraction: float) -> np.ndarray:
    """True on the training cells: first fraction of kept checkpoints × first fraction of N values."""
    n_n, n_s = grid.r_id.shape
    mask = np.zeros((n_n, n_s), dtype=bool)
    kept = n_s - start
    last_step = start + max(1, int(math.floor(train_fraction * kept)))
    last_n = max(1, int(math.floor(train_fraction * n_n)))
    mask[:last_n, start:last_step] = True
    return mask


def observed_transition(steps: np.ndarray, r: np.ndarray) -> float | None:
    """First checkpoint after which r stays > 0 (M-like for good); None when the run ends G-like.

    ``steps[0]`` means M-like from the first checkpoint given, so no transition was seen.
    """
    if r[-1] <= 0:
        return None
    below = np.nonzero(r <= 0)[0]
    return float(steps[0] if len(below) == 0 else steps[below[-1] + 1])


def threshold(num_tasks: np.ndarray, r_final: np.ndarray) -> dict[str, Any]:
    """Largest N still M-like and smallest N already G-like at the last checkpoint."""
    m_like = [int(n) for n, r in zip(num_tasks, r_final) if r > 0]
    g_like = [int(n) for n, r in zip(num_tasks, r_final) if r <= 0]
    return {"largest_memorizing_N": max(m_like) if m_like else None,
            "smallest_generalizing_N": min(g_like) if g_like else None,
            "monotone": bool(not m_like or not g_like or max(m_like) < min(g_like))}


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import pearsonr

    a, b = np.ravel(a), np.ravel(b)
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(pearsonr(a, b).statistic)


def _slope(x: list[float], y: list[float]) -> float | None:
    """Slope of log y on log x (superlinear growth: > 1)."""
    if len(x) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def analyse(grid: Grid, train_fraction: float = 0.8) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fit the model and compute every reported number; returns (summary, per-cell arrays)."""
    start = interpolation_start(grid)
    mask = split_mask(grid, start, train_fraction)
    inputs = grid.inputs()
    fitted = hbm.fit(grid.setting, inputs, grid.target["id"], grid.pred_m["id"], grid.pred_g["id"], mask)
    params = [fitted["params"][k] for k in hbm.PARAM_NAMES]
    w = hbm.weight_m(params, inputs)
    odds = hbm.log_odds(params, inputs)
    cells: dict[str, np.ndarray] = {"w_pred": w, "log_odds": odds, "r_obs_id": grid.r_id, "r_obs_ood": grid.r_ood,
                                    "train": mask}
    for split in ("id", "ood"):
        mix = _mixture(w, grid.pred_m[split], grid.pred_g[split])
        m = np.broadcast_to(grid.pred_m[split][:, None], mix.shape)
        g = np.broadcast_to(grid.pred_g[split][:, None], mix.shape)
        cells[f"r_pred_{split}"] = relative_distance(grid.setting, mix, m, g).mean(axis=-1)
    fit_cells = np.zeros_like(mask)
    fit_cells[:, start:] = True
    test = fit_cells & ~mask
    correlation = {}
    for split in ("id", "ood"):
        obs, pred = cells[f"r_obs_{split}"], cells[f"r_pred_{split}"]
        correlation[split] = {"train": _pearson(obs[mask], pred[mask]), "test": _pearson(obs[test], pred[test]),
                              "all_fitted_steps": _pearson(obs[fit_cells], pred[fit_cells]),
                              "weight_vs_observed": _pearson((obs[fit_cells] + 1) / 2, w[fit_cells])}
    predicted_t = hbm.transition_steps(params, inputs)
    # checkpoints before the interpolation threshold are near the initialisation, neither M nor G
    observed_t = [observed_transition(grid.steps[start:], r[start:]) for r in grid.r_id]
    transient = [int(n) for n, r in zip(grid.num_tasks, grid.r_id) if r[start:].min() <= 0 < r[-1]]
    both = [(n, t) for n, t in zip(grid.num_tasks, observed_t) if t is not None and t > grid.steps[start]]
    summary = {
        "setting": grid.setting, "num_tasks": grid.num_tasks.tolist(), "steps": grid.steps.tolist(),
        "fit": fitted, "interpolation_start_step": int(grid.steps[start]),
        "train_cells": int(mask.sum()), "test_cells": int(test.sum()),
        "complexity_bits": {"M": grid.complexity[:, 0].tolist(), "G": grid.complexity[:, 1].tolist()},
        "predictor_loss": {"M": grid.loss[:, 0].tolist(), "G": grid.loss[:, 1].tolist()},
        "pearson_r": correlation,
        "threshold_observed": threshold(grid.num_tasks, grid.r_id[:, -1]),
        "threshold_predicted": threshold(grid.num_tasks, cells["r_pred_id"][:, -1]),
        "transition_step_observed": observed_t,
        "transition_step_predicted": [None if not np.isfinite(t) else float(t) for t in predicted_t],
        "transient_N": transient,
        "transition_slope_observed": _slope([float(n) for n, _ in both], [t for _, t in both]),
        "transition_slope_predicted": _slope(
            [float(n) for n, t in zip(grid.num_tasks, predicted_t) if np.isfinite(t) and t > 0],
            [float(t) for t in predicted_t if np.isfinite(t) and t > 0]),
    }
    return summary, cells
