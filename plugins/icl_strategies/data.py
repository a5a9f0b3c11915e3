"""Tasks and sequences of the three settings, deterministic from a seed (numpy only).

A *task set* is what a transformer is trained on: N tasks drawn from the true
prior. Sequences are sampled online from it (a fresh batch every step), as in
the paper, so the data on disk are just the tasks:

* ``categorical-sequence`` (balls & urns): θ_k ~ Dirichlet(1_D); a sequence is
  the start token ``D`` then T draws from Cat(θ_k). ``tasks``: [N, D].
* ``linear-regression``: w_k ~ N(0, I_D); x_i ~ N(0, I_D), y_i = w·x_i + ε,
  ε ~ N(0, σ²) with σ² = D/256. ``tasks``: [N, D].
* ``classification``: N item–label pairs, item μ_k ~ N(0, I_D/D), label
  uniform in {0, 1}; a sequence is T−1 context exemplars drawn with
  replacement from the N pairs, then a query that copies one context pair
  (burstiness: the answer is always in context). Exemplars are noisy,
  x = (μ + σ_w·ε)/√(1+σ_w²) with ε ~ N(0, I_D/D) and σ_w² = 0.5.
  ``tasks``: [N, D] items and ``labels``: [N].

Every random stream comes from ``numpy.random.default_rng`` seeded with a
tuple naming its purpose, so each (seed, N, purpose) has its own stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SETTINGS = ("categorical-sequence", "linear-regression", "classification")
WITHIN_CLASS_VARIANCE = 0.5
_PURPOSE = {"train-tasks": 0, "eval-tasks": 1, "train-batches": 2, "eval-id": 3, "eval-ood": 4, "loss": 5}


def rng(seed: int, purpose: str, *more: int) -> np.random.Generator:
    """A generator for one purpose (tasks, batches, evaluation) of one grid cell."""
    return np.random.default_rng([seed, _PURPOSE[purpose], *more])


def noise_variance(num_dims: int) -> float:
    """σ² of the regression noise: D/256, as in the paper."""
    return num_dims / 256.0


@dataclass(frozen=True)
class TaskSet:
    """N tasks of one setting: ``tasks`` [N, D] (θ, w or items) and, for classification, ``labels``."""

    setting: str
    tasks: np.ndarray
    labels: np.ndarray | None = None

    @property
    def num_tasks(self) -> int:
        return int(self.tasks.shape[0])

    @property
    def num_dims(self) -> int:
        return int(self.tasks.shape[1])

    def save(self, path: Path) -> None:
        """Write ``path`` (.npz) atomically."""
        from runner.atomic import atomic_path

        arrays = {"tasks": self.tasks}
        if self.labels is not None:
            arrays["labels"] = self.labels
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, setting=np.array(self.setting), **arrays)

    @classmethod
    def load(cls, path: Path) -> TaskSet:
        with np.load(path, allow_pickle=False) as data:
            labels = data["labels"] if "labels" in data.files else None
            return cls(str(data["setting"]), data["tasks"], labels)


def draw_tasks(setting: str, num_dims: int, num_tasks: int, generator: np.random.Generator) -> TaskSet:
    """N tasks from the setting's true prior."""
    if setting == "categorical-sequence":
        return TaskSet(setting, generator.dirichlet(np.ones(num_dims), size=num_tasks))
    if setting == "linear-regression":
        return TaskSet(setting, generator.standard_normal((num_tasks, num_dims)))
    if setting == "classification":
        items = generator.standard_normal((num_tasks, num_dims)) / np.sqrt(num_dims)
        return TaskSet(setting, items, generator.integers(0, 2, num_tasks))
    raise ValueError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")


def train_tasks(setting: str, num_dims: int, num_tasks: int, seed: int) -> TaskSet:
    return draw_tasks(setting, num_dims, num_tasks, rng(seed, "train-tasks", num_dims, num_tasks))


def eval_tasks(setting: str, num_dims: int, num_tasks: int, seed: int) -> TaskSet:
    """Fresh tasks from the true prior (the out-of-distribution evaluation), seed + 1 as in the paper."""
    return draw_tasks(setting, num_dims, num_tasks, rng(seed + 1, "eval-tasks", num_dims))


# --------------------------------------------------------------------------- sequences


@dataclass
class Batch:
    """A batch of sequences. Shapes by setting (B sequences, T context length, D dims):

    * categorical: ``tokens`` [B, T+1] int (start token first), ``task_index`` [B];
    * regression: ``x`` [B, T, D], ``y`` [B, T];
    * classification: ``x`` [B, T, D] (last row = query), ``y`` [B, T] labels
      (the query's true label at position T−1; models see it masked).
    """

    task_index: np.ndarray
    tokens: np.ndarray | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None


def sample_batch(taskset: TaskSet, batch_size: int, context_length: int, generator: np.random.Generator,
                 task_index: np.ndarray | None = None) -> Batch:
    """Sequences from tasks picked uniformly (or from ``task_index``)."""
    n, d = taskset.num_tasks, taskset.num_dims
    if taskset.setting == "classification":
        return _classification_batch(taskset, batch_size, context_length, generator)
    if task_index is None:
        task_index = generator.integers(0, n, batch_size)
    if taskset.setting == "categorical-sequence":
        cumulative = np.cumsum(taskset.tasks[task_index], axis=1)
        cumulative[:, -1] = 1.0
        u = generator.random((batch_size, context_length))
        draws = np.stack([np.searchsorted(c, row, side="right") for c, row in zip(cumulative, u)])
        tokens = np.concatenate([np.full((batch_size, 1), d), np.minimum(draws, d - 1)], axis=1)
        return Batch(task_index, tokens=tokens.astype(np.int64))
    x = generator.standard_normal((batch_size, context_length, d))
    noise = generator.standard_normal((batch_size, context_length)) * np.sqrt(noise_variance(d))
    y = np.einsum("btd,bd->bt", x, taskset.tasks[task_index]) + noise
    return Batch(task_index, x=x.astype(np.float32), y=y.astype(np.float32))


def _classification_batch(taskset: TaskSet, batch_size: int, context_length: int,
                          generator: np.random.Generator) -> Batch:
    n, d = taskset.num_tasks, taskset.num_dims
    context = generator.integers(0, n, (batch_size, context_length - 1))
    copied = context[np.arange(batch_size), generator.integers(0, context_length - 1, batch_size)]
    index = np.concatenate([context, copied[:, None]], axis=1)
    noise = generator.standard_normal((batch_size, context_length, d)) / np.sqrt(d)
    s2 = WITHIN_CLASS_VARIANCE
    x = (taskset.tasks[index] + np.sqrt(s2) * noise) / np.sqrt(1 + s2)
    return Batch(index, x=x.astype(np.float32), y=taskset.labels[index].astype(np.int64))
