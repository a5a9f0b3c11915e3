"""Behaviour measures: where a transformer's predictions sit between M and G.

Distances are per sequence (averaged over its positions): symmetrised KL for
the categorical and classification settings, squared error for regression.
The relative distance r = (d_TG − d_TM) / d_MG, clipped to [−1, 1], is +1
when the transformer predicts like M and −1 when it predicts like G; it is
computed per sequence and averaged. The observed M-weight is (r + 1) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from plugins.icl_strategies import predictors as P
from plugins.icl_strategies.data import WITHIN_CLASS_VARIANCE, Batch, TaskSet, noise_variance

EPS = 1e-12


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p‖q) over the last axis."""
    p, q = np.clip(p, EPS, None), np.clip(q, EPS, None)
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def distance(setting: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sequence distance between two predictions of a batch."""
    if setting == "linear-regression":
        return ((a - b) ** 2).mean(axis=-1)
    sym = 0.5 * (kl(a, b) + kl(b, a))
    return sym.mean(axis=-1) if setting == "categorical-sequence" else sym


def relative_distance(setting: str, pred: np.ndarray, m: np.ndarray, g: np.ndarray) -> np.ndarray:
    """r per sequence, in [−1, 1] (+1: like M, −1: like G)."""
    d_mg = np.maximum(distance(setting, m, g), EPS)
    return np.clip((distance(setting, pred, g) - distance(setting, pred, m)) / d_mg, -1.0, 1.0)


@dataclass(frozen=True)
class Strategy:
    """A Bayesian predictor bound to its prior: ``function`` is what K(Q) measures, ``prior`` what it stores."""

    name: str
    function: Callable[..., np.ndarray]
    prior: tuple[np.ndarray, ...]
    args: tuple

    def __call__(self, batch: Batch) -> np.ndarray:
        inputs = (batch.tokens[:, 1:],) if batch.tokens is not None else (batch.x, batch.y)
        return self.function(*self.args, *inputs)


def strategies(taskset: TaskSet) -> dict[str, Strategy]:
    """M, G and C for the setting of ``taskset`` (M memorises its tasks)."""
    d = taskset.num_dims
    if taskset.setting == "categorical-sequence":
        alpha = np.ones(d)
        return {"M": Strategy("M", P.memorizing_categorical, (taskset.tasks,), (taskset.tasks,)),
                "G": Strategy("G", P.generalizing_categorical, (alpha,), (alpha,)),
                "C": Strategy("C", P.constant_categorical, (alpha,), (alpha,))}
    if taskset.setting == "linear-regression":
        s2 = noise_variance(d)
        return {"M": Strategy("M", P.memorizing_regression, (taskset.tasks, np.array([s2])), (taskset.tasks, s2)),
                "G": Strategy("G", P.ridge_regression, (np.array([1.0, s2]),), (1.0, s2)),
                "C": Strategy("C", P.constant_regression, (np.array([0.0]),), (0.0,))}
    s2 = WITHIN_CLASS_VARIANCE
    return {"M": Strategy("M", P.memorizing_classification, (taskset.tasks, taskset.labels, np.array([s2])),
                          (taskset.tasks, taskset.labels, s2)),
            "G": Strategy("G", P.copying_classification, (np.array([s2]),), (s2,)),
            "C": Strategy("C", P.constant_classification, (), ())}


def task_loss(taskset: TaskSet, batch: Batch, pred: np.ndarray) -> np.ndarray:
    """Per-sequence loss of a prediction against the truth (the L̄(Q) of the hierarchical model).

    Categorical: mean over positions of KL(θ‖p) (cross-entropy minus the
    task's entropy); regression: squared error to the noiseless w·x over
    2σ²; classification: cross-entropy of the query's label.
    """
    if taskset.setting == "categorical-sequence":
        theta = taskset.tasks[batch.task_index][:, None, :]
        return kl(np.broadcast_to(theta, pred.shape), pred).mean(axis=-1)
    if taskset.setting == "linear-regression":
        clean = np.einsum("btd,bd->bt", batch.x, taskset.tasks[batch.task_index])
        return ((pred - clean) ** 2).mean(axis=-1) / (2 * noise_variance(taskset.num_dims))
    return -np.log(np.clip(pred[np.arange(len(pred)), batch.y[:, -1]], EPS, None))
