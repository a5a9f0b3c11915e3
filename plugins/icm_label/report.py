"""Tables, CSV and figures of the icm_label job, all computed from the run's own files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from plugins.common.stats import fmt

TRAJECTORY_COLUMNS = ["batch", "iteration", "claim", "previous", "proposed", "changed", "accepted", "energy",
                      "candidate_energy", "delta", "mp", "inconsistent", "labelled", "accepted_total", "temperature",
                      "accuracy"]
LABEL_COLUMNS = ["labelling", "labelled", "inconsistent", "accuracy", "accuracy_lo", "accuracy_hi", "accuracy_n",
                 "balanced_accuracy"]
DOWNSTREAM_COLUMNS = ["condition", "shots", "demo_label_accuracy", "accuracy", "accuracy_lo", "accuracy_hi",
                      "accuracy_n"]

# Test accuracy read off the paper's figure for Llama-3.1-70B (zero-shot base / ICM / golden labels);
# shown next to our numbers for orientation, never used in a computation.
PUBLISHED = {
    "truthfulqa": {"zero-shot": 0.60, "ICM labels": 0.91, "gold labels": 0.92},
    "gsm8k": {"zero-shot": 0.48, "ICM labels": 0.81, "gold labels": 0.815},
}


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """``{"accuracy": {"acc", "lo", "hi", "n"}}`` -> ``accuracy``, ``accuracy_lo``, ... columns."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict) and "acc" in value:
            out[key], out[f"{key}_lo"], out[f"{key}_hi"], out[f"{key}_n"] = (value["acc"], value["lo"], value["hi"],
                                                                             value["n"])
        else:
            out[key] = value
    return out


def print_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    """Print the rows as a rich table (accuracies as ``acc [lo, hi] n=``)."""
    from plugins.common.tables import rows_table

    print(rows_table(rows, title, width=140, cell=lambda v: fmt(v) if isinstance(v, dict) else None), end="")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_trajectory(trajectory: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """U per iteration (accepted changes marked), label accuracy when gold exists, and the temperature."""
    from runner.atomic import atomic_path

    plt = _plt()
    has_acc = any(r.get("accuracy") is not None for r in trajectory)
    fig, axes = plt.subplots(1, 3 if has_acc else 2, figsize=(13 if has_acc else 9, 3.2))
    batches = sorted({r["batch"] for r in trajectory})
    for b in batches:
        rows = [r for r in trajectory if r["batch"] == b]
        its = [r["iteration"] for r in rows]
        label = f"batch {b}" if len(batches) > 1 else None
        axes[0].plot(its, [r["energy"] for r in rows], label=label)
        taken = [r for r in rows if r["changed"] and r["accepted"]]
        axes[0].scatter([r["iteration"] for r in taken], [r["energy"] for r in taken], s=6, color="tab:red")
        if has_acc:
            axes[1].plot(its, [r["accuracy"] for r in rows])
        axes[-1].plot(its, [r["temperature"] for r in rows])
    axes[0].set_title("U = alpha·MP − I (red: accepted changes)", fontsize=9)
    if has_acc:
        axes[1].set_title("accuracy of the labels so far (gold, reporting only)", fontsize=9)
        axes[1].set_ylim(-0.03, 1.03)
    axes[-1].set_title("temperature", fontsize=9)
    axes[-1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("iteration")
    if len(batches) > 1:
        axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_downstream(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy per condition with its bootstrap interval."""
    from runner.atomic import atomic_path

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [r["condition"] for r in rows]
    accs = [r["accuracy"]["acc"] for r in rows]
    err = [[a - r["accuracy"]["lo"] for a, r in zip(accs, rows)], [r["accuracy"]["hi"] - a for a, r in zip(accs, rows)]]
    ax.bar(names, accs, yerr=err, capsize=4, color=["tab:gray", "tab:orange", "tab:blue", "tab:green"][: len(rows)])
    ax.axhline(0.5, color="black", linewidth=0.6, linestyle=":")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"accuracy (n={rows[0]['accuracy']['n']}, 95% CI)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
