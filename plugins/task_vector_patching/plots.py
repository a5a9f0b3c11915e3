"""Figures of the task_vector_patching jobs (matplotlib, Agg), all computed from the run's results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_layer_curves(res: dict, path: Path) -> None:
    """Dev accuracy of the patched task vector vs layer, one panel per task plus the mean (paper Fig. 3 shape).

    Each panel: the curve with its 95% bootstrap band, the test baseline and
    ICL accuracies as horizontal lines, and the chosen layer marked.
    """
    plt = _plt()
    rows = {r["task"]: r for r in res["rows"]}
    names = list(res["curves"])
    panels = names + (["mean"] if len(names) > 1 else [])
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, panels):
        if name == "mean":
            curve = [sum(res["curves"][n][i]["acc"] for n in names) / len(names)
                     for i in range(len(res["curves"][names[0]]))]
            lo = hi = None
            base, icl = res["mean"]["baseline"]["acc"], res["mean"]["icl"]["acc"]
            best = None
        else:
            pts = res["curves"][name]
            curve = [p["acc"] for p in pts]
            lo, hi = [p["lo"] for p in pts], [p["hi"] for p in pts]
            base, icl = rows[name]["baseline"]["acc"], rows[name]["icl"]["acc"]
            best = rows[name]["best_layer"]
        xs = list(range(len(curve)))
        ax.plot(xs, curve, marker="o", color="tab:blue", label="task vector (dev)")
        if lo is not None:
            ax.fill_between(xs, lo, hi, color="tab:blue", alpha=0.2)
        ax.axhline(icl, color="tab:green", linestyle="--", label="ICL (test)")
        ax.axhline(base, color="tab:gray", linestyle=":", label="baseline (test)")
        if best is not None:
            ax.axvline(best, color="tab:red", alpha=0.3)
        ax.set_title(name if name != "mean" else f"mean over {len(names)} tasks", fontsize=9)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("layer")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{res['model']}: task-vector accuracy by layer ({res['patch_mode']}"
                 + (f", scale {res['scale']:g}" if res["patch_mode"] == "add" else "") + ")", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_conflicting(rows: Sequence[dict], path: Path, title: str = "") -> None:
    """Grouped bars: ICL and task-vector accuracy against the original (A) and overriding (B) answers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.9 * max(2, len(rows)) + 2, 3.4))
    keys = [("icl_original", "ICL vs A"), ("icl_overriding", "ICL vs B"),
            ("tv_original", "task vector vs A"), ("tv_overriding", "task vector vs B")]
    width = 0.2
    for j, (key, label) in enumerate(keys):
        xs = [i + (j - 1.5) * width for i in range(len(rows))]
        acc = [r[key]["acc"] for r in rows]
        err = [[a - r[key]["lo"] for a, r in zip(acc, rows)], [r[key]["hi"] - a for a, r in zip(acc, rows)]]
        ax.bar(xs, acc, width, yerr=err, label=label, capsize=2)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['original']}\n-> {r['overriding']}" for r in rows], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(f"conflicting tasks: demos of A, task vector of B ({title})", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_distances(within: Any, between: Any, path: Path, title: str = "") -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.hist(within, bins=40, alpha=0.6, density=True, label=f"within task (n={len(within)})")
    ax.hist(between, bins=40, alpha=0.6, density=True, label=f"between tasks (n={len(between)})")
    ax.set_xlabel("cosine distance")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_projection(x: Any, labels: Any, names: Sequence[str], path: Path, method: str = "tsne", seed: int = 41,
                    title: str = "") -> None:
    """2-D t-SNE (as in the paper) or PCA of the task vectors, coloured by task."""
    import numpy as np

    plt = _plt()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1 if len(x) < 5000 else None):  # small inputs: threads only add contention
        if method == "tsne":
            from sklearn.manifold import TSNE

            perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
            xy = TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(x)
        else:
            from sklearn.decomposition import PCA

            xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for i, name in enumerate(names):
        sel = np.asarray(labels) == i
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=cmap(i % cmap.N), label=name)
    ax.set_title(f"{title} ({method})", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
