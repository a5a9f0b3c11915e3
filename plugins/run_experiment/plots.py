"""The paper's figures: a task's two methods against model size or training tokens, one line per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from plugins.run_experiment.measures import methods
from runner.atomic import atomic_path

_YLABEL = {"accuracy": "accuracy (95% bootstrap CI)", "logprob": "mean log P(final word) (95% bootstrap CI)"}


def _draw(ax: Any, task: str, points: Sequence[dict[str, Any]], x_key: str, label: str = "") -> bool:
    drawn = False
    for m, style in zip(methods(task), ("o-", "s--")):
        pts = sorted((p[x_key], p["measures"][m.name]) for p in points
                     if p.get(x_key) and p["measures"].get(m.name, {}).get("n"))
        if not pts:
            continue
        xs = [x for x, _ in pts]
        ys = [s["mean"] for _, s in pts]
        err = [[s["mean"] - s["lo"] for _, s in pts], [s["hi"] - s["mean"] for _, s in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3, label=f"{label}{m.name} ({m.demand} demand)")
        drawn = True
    kind = methods(task)[0].kind
    if kind == "accuracy":
        ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(_YLABEL.get(kind, kind))
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
    return drawn


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_by_size(task: str, points: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Final checkpoints (revision main) of every model: methods vs parameter count."""
    plt = _pyplot()
    final = [p for p in points if p["revision"] == "main"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if _draw(ax, task, final, "n_params"):
        for p in final:
            ax.annotate(p["model"], (p["n_params"], p["measures"][methods(task)[0].name]["mean"]),
                        fontsize=7, textcoords="offset points", xytext=(3, 3))
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no final checkpoints (revision main) in this grid", ha="center", transform=ax.transAxes)
    ax.set_xlabel("parameters")
    ax.set_title(f"{task}: demand gap by model size")
    _save(fig, path)
    plt.close(fig)


def plot_by_tokens(task: str, points: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Every checkpoint with a known token count: methods vs training tokens, one panel per model."""
    plt = _pyplot()
    models = list(dict.fromkeys(p["model"] for p in points))
    fig, axes = plt.subplots(1, len(models), figsize=(5.0 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        if _draw(ax, task, [p for p in points if p["model"] == model], "training_tokens"):
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "training tokens unknown", ha="center", transform=ax.transAxes)
        ax.set_xlabel("training tokens")
        ax.set_title(f"{task}: {model}")
    _save(fig, path)
    plt.close(fig)
