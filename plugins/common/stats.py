"""Accuracies with their n and a percentile bootstrap confidence interval (no torch; shared by the plugins)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

N_BOOT = 2000


def accuracy(correct: Sequence[bool] | Sequence[int], seed: int = 0, confidence: float = 0.95,
             n_boot: int = N_BOOT) -> dict:
    """``{"acc", "n", "lo", "hi"}``: mean of per-item outcomes (0/1, or paired differences) and its bootstrap
    interval (``n_boot`` resamples)."""
    values = np.asarray(list(correct), dtype=float)
    n = int(values.size)
    if n == 0:
        return {"acc": float("nan"), "n": 0, "lo": float("nan"), "hi": float("nan")}
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return {"acc": float(values.mean()), "n": n, "lo": float(np.quantile(means, alpha)),
            "hi": float(np.quantile(means, 1 - alpha))}


def mean_accuracy(groups: Sequence[Sequence[bool]], seed: int = 0, confidence: float = 0.95) -> dict:
    """Mean over tasks of per-task accuracy; the bootstrap resamples items within every task.

    ``n`` is the total number of items, ``tasks`` the number of tasks.
    """
    groups = [np.asarray(list(g), dtype=float) for g in groups if len(g)]
    if not groups:
        return {"acc": float("nan"), "n": 0, "tasks": 0, "lo": float("nan"), "hi": float("nan")}
    rng = np.random.default_rng(seed)
    boots = np.zeros(N_BOOT)
    for g in groups:
        boots += g[rng.integers(0, g.size, size=(N_BOOT, g.size))].mean(axis=1)
    boots /= len(groups)
    alpha = (1 - confidence) / 2
    return {"acc": float(np.mean([g.mean() for g in groups])), "n": int(sum(g.size for g in groups)),
            "tasks": len(groups), "lo": float(np.quantile(boots, alpha)), "hi": float(np.quantile(boots, 1 - alpha))}


def fmt(stat: dict) -> str:
    """``0.82 [0.71, 0.90] n=50``."""
    if not stat or stat.get("n", 0) == 0:
        return "-"
    return f"{stat['acc']:.2f} [{stat['lo']:.2f}, {stat['hi']:.2f}] n={stat['n']}"
