"""The Bayesian predictors the transformer's behaviour is explained with.

For each setting: the memorizing predictor M (a discrete uniform prior over
the N training tasks; posterior-weighted predictive), the generalizing
predictor G (a prior matching the true task distribution) and the optimal
constant baseline C. Each predictor is one self-contained function on purpose:
its complexity K(Q) is measured from its own source text
(:mod:`plugins.icl_strategies.complexity`), so nothing it needs may hide in a
helper.

Conventions (B sequences, T context length, D dims):

* categorical: ``x`` [B, T] tokens without the start token; returns [B, T+1, D],
  row t = p(next token | x_<t) (row 0: nothing seen yet).
* regression: ``x`` [B, T, D], ``y`` [B, T]; returns ŷ [B, T], ŷ_t from the
  pairs before t and x_t.
* classification: ``x`` [B, T, D] (last = query), ``y`` [B, T] (context labels;
  the last is ignored); returns p(label) [B, 2] for the query.
"""

from __future__ import annotations

import numpy as np


def memorizing_categorical(tasks: np.ndarray, x: np.ndarray) -> np.ndarray:
    log_tasks = np.log(np.clip(tasks, 1e-300, None))
    counts = np.eye(tasks.shape[1])[x].cumsum(axis=1)
    log_post = np.einsum("btd,nd->btn", counts, log_tasks)
    log_post = np.concatenate([np.zeros((x.shape[0], 1, tasks.shape[0])), log_post], axis=1)
    post = np.exp(log_post - log_post.max(axis=-1, keepdims=True))
    post /= post.sum(axis=-1, keepdims=True)
    return post @ tasks


def generalizing_categorical(alpha: np.ndarray, x: np.ndarray) -> np.ndarray:
    counts = np.eye(alpha.shape[0])[x].cumsum(axis=1)
    counts = np.concatenate([np.zeros((x.shape[0], 1, alpha.shape[0])), counts], axis=1)
    return (counts + alpha) / (counts.sum(axis=-1, keepdims=True) + alpha.sum())


def constant_categorical(alpha: np.ndarray, x: np.ndarray) -> np.ndarray:
    mean = alpha / alpha.sum()
    return np.broadcast_to(mean, (x.shape[0], x.shape[1] + 1, alpha.shape[0])).copy()


def memorizing_regression(tasks: np.ndarray, noise_variance: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    preds = np.einsum("btd,nd->btn", x, tasks)
    sq_err = (y[:, :, None] - preds) ** 2
    log_post = -np.cumsum(sq_err, axis=1) / (2 * noise_variance)
    log_post = np.concatenate([np.zeros((x.shape[0], 1, tasks.shape[0])), log_post[:, :-1]], axis=1)
    post = np.exp(log_post - log_post.max(axis=-1, keepdims=True))
    post /= post.sum(axis=-1, keepdims=True)
    return (post * preds).sum(axis=-1)


def ridge_regression(prior_variance: float, noise_variance: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    batch, length, dims = x.shape
    out = np.zeros((batch, length))
    gram = np.zeros((batch, dims, dims)) + np.eye(dims) * (noise_variance / prior_variance)
    moment = np.zeros((batch, dims))
    for t in range(length):
        w = np.linalg.solve(gram, moment[..., None])[..., 0]
        out[:, t] = np.einsum("bd,bd->b", x[:, t], w)
        gram += np.einsum("bi,bj->bij", x[:, t], x[:, t])
        moment += x[:, t] * y[:, t, None]
    return out


def constant_regression(prior_mean: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.full(y.shape, prior_mean, dtype=np.float64)


def memorizing_classification(items: np.ndarray, labels: np.ndarray, within_variance: float,
                              x: np.ndarray, y: np.ndarray) -> np.ndarray:
    query = x[:, -1] * np.sqrt(1 + within_variance)
    sq_dist = ((query[:, None, :] - items[None]) ** 2).sum(axis=-1)
    log_post = -items.shape[1] * sq_dist / (2 * within_variance)
    post = np.exp(log_post - log_post.max(axis=-1, keepdims=True))
    post /= post.sum(axis=-1, keepdims=True)
    probs = post @ np.eye(2)[labels]
    return np.clip(probs, 1e-5, 1 - 1e-5)


def copying_classification(within_variance: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    s2, dims = within_variance, x.shape[-1]
    scale = dims * (1 + s2) ** 2 / (2 * s2 * (2 + s2))
    sq_dist = ((x[:, -1:, :] - x[:, :-1, :] / (1 + s2)) ** 2).sum(axis=-1)
    log_post = -scale * sq_dist
    post = np.exp(log_post - log_post.max(axis=-1, keepdims=True))
    post /= post.sum(axis=-1, keepdims=True)
    probs = np.einsum("bt,btk->bk", post, np.eye(2)[y[:, :-1]])
    return np.clip(probs, 1e-5, 1 - 1e-5)


def constant_classification(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.full((x.shape[0], 2), 0.5)
