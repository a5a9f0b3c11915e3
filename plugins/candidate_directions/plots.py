"""PNG figures of the directions and probes jobs (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _ticks(ax: Any, names: Sequence[str]) -> None:
    step = max(1, len(names) // 12)
    positions = list(range(0, len(names), step))
    ax.set_xticks(positions)
    ax.set_xticklabels([names[i] for i in positions], rotation=45, ha="right", fontsize=7)


def _save(fig: Any, path: Path) -> None:
    from runner.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_norms(path: Path, labels: Sequence[str], direction: Sequence[float], overall: Sequence[float],
               title: str) -> Path:
    """‖direction‖ and ‖overall mean‖ per layer, and their ratio."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    xs = range(len(labels))
    left.plot(xs, direction, marker=".", label="‖reasoning − memorizing‖")
    left.plot(xs, overall, marker=".", label="‖overall mean‖")
    left.set_yscale("log")
    left.set_ylabel("L2 norm")
    left.legend(fontsize=8)
    ratio = [d / o if o else float("nan") for d, o in zip(direction, overall)]
    right.plot(xs, ratio, marker=".", color="tab:green")
    right.set_ylabel("‖direction‖ / ‖overall mean‖")
    for ax in (left, right):
        _ticks(ax, labels)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_accuracy(path: Path, labels: Sequence[str], series: dict[str, tuple[list, list, list]], chance: float,
                  title: str) -> Path:
    """Accuracy per layer with its bootstrap interval, one line per probe/control."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    xs = list(range(len(labels)))
    for name, (acc, low, high) in series.items():
        line = ax.plot(xs, acc, marker=".", label=name)[0]
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"majority class ({chance:.2f})")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("held-out accuracy (95% bootstrap CI)")
    ax.set_xlabel("layer")
    _ticks(ax, labels)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return path
