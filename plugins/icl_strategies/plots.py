"""The three figures of the analysis, as PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runner.atomic import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def relative_distance(summary: dict, cells: dict, path: Path) -> None:
    """Observed (solid) vs predicted (dashed) relative distance over training, one colour per N."""
    plt = _figure()
    steps, num_tasks = np.asarray(summary["steps"]), summary["num_tasks"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = plt.cm.viridis(np.linspace(0, 0.95, len(num_tasks)))
    for ax, split, title in zip(axes, ("id", "ood"), ("in distribution", "fresh tasks")):
        for i, (n, colour) in enumerate(zip(num_tasks, colours)):
            ax.plot(steps, cells[f"r_obs_{split}"][i], color=colour, label=f"N={n}")
            ax.plot(steps, cells[f"r_pred_{split}"][i], color=colour, linestyle="--")
        ax.axvline(summary["interpolation_start_step"], color="grey", linewidth=0.8, linestyle=":")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        r = summary["pearson_r"][split]["all_fitted_steps"]
        ax.set_title(f"{title} (Pearson r = {r:.3f})" if r is not None else title)
    axes[0].set_ylabel("relative distance r  (+1 = M, −1 = G)")
    axes[1].legend(fontsize=7, ncol=2, title="solid observed, dashed model", title_fontsize=7)
    _save(fig, path)
    plt.close(fig)


def posterior_odds(summary: dict, cells: dict, path: Path) -> None:
    """log10 posterior odds M:G over N × step; black line: predicted odds 1, white dots: observed r > 0."""
    plt = _figure()
    steps, num_tasks = np.asarray(summary["steps"]), summary["num_tasks"]
    odds = cells["log_odds"] / np.log(10)
    fig, ax = plt.subplots(figsize=(7, 4))
    limit = max(1.0, float(np.nanpercentile(np.abs(odds), 95)))
    image = ax.pcolormesh(steps, np.arange(len(num_tasks)), odds, cmap="RdBu_r", vmin=-limit, vmax=limit,
                          shading="nearest")
    ax.contour(steps, np.arange(len(num_tasks)), odds, levels=[0], colors="black", linewidths=1)
    ys, xs = np.nonzero(cells["r_obs_id"] > 0)
    ax.scatter(steps[xs], ys, s=4, color="white", label="observed M-like (r > 0)")
    ax.set_yticks(np.arange(len(num_tasks)), [str(n) for n in num_tasks])
    ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("N training tasks")
    ax.legend(loc="lower left", fontsize=7)
    fig.colorbar(image, ax=ax, label="log10 posterior odds M:G (model)")
    _save(fig, path)
    plt.close(fig)


def transition_time(summary: dict, path: Path) -> None:
    """Step of the G→M transition vs N, observed and predicted (log-log; up to 100× the steps trained)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    n = np.asarray(summary["num_tasks"], dtype=float)
    start, horizon = summary["interpolation_start_step"], 100 * summary["steps"][-1]
    seen = [(x, t) for x, t in zip(n, summary["transition_step_observed"]) if t is not None and t > start]
    early = [(x, start) for x, t in zip(n, summary["transition_step_observed"]) if t is not None and t <= start]
    if seen:
        ax.plot(*zip(*seen), "o-", label="observed (r stays > 0 from here)")
    if early:
        ax.plot(*zip(*early), "v", color="C0", fillstyle="none", label="observed: M-like from the first fitted step")
    predicted = [(x, t) for x, t in zip(n, summary["transition_step_predicted"]) if t is not None and 0 < t <= horizon]
    if predicted:  # a predicted transition far beyond training is not drawn
        ax.plot(*zip(*predicted), "s--", label="model (odds M:G = 1)")
    ax.axhline(summary["steps"][-1], color="grey", linewidth=0.8, linestyle=":", label="last step trained")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N training tasks")
    ax.set_ylabel("transition step")
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
