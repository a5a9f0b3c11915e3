"""The hierarchical Bayesian model: strategies weighted by complexity and evidence.

For a strategy Q (M or G) trained on N tasks, at training step n:

    log prior(Q)      = −ln 2 · K(Q)^β
    log likelihood(Q) = −γ · n^(1−α) · L̄(Q)

K(Q) is the predictor's complexity in bits, measured here (never typed in):
the compressed size of its implementation in this package (the function's
source with docstrings and comments removed) plus the compressed size of the
prior it has to store — for M the N training tasks, so it grows with N. L̄(Q)
is its average in-distribution loss. The model's prediction is the
posterior-weighted mixture Σ_Q w_Q f_Q; α, β, γ are fitted with scipy's
L-BFGS-B on log-parameters (gradients from torch autograd) by minimising the
divergence between the transformer's predictions and the mixture.
"""

from __future__ import annotations

import ast
import bz2
import inspect
import lzma
import math
import textwrap
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

LN2 = math.log(2.0)
PARAM_NAMES = ("alpha", "beta", "gamma")
#: Bounds of (α, β, γ); α < 1 keeps evidence accumulation increasing in n.
BOUNDS = ((1e-3, 0.999), (1e-3, 2.0), (1e-6, 1e4))
#: The paper's starting points per setting (α, β, γ).
INITS = {"categorical-sequence": (0.6, 0.2, 0.85), "linear-regression": (0.65, 0.3, 0.01),
         "classification": (0.8, 0.12, 1.5)}


def _compressed_bits(data: bytes) -> int:
    """Bits of the smallest of three standard compressors' outputs (a computable bound on K)."""
    sizes = (len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)), len(bz2.compress(data, 9)),
             len(zlib.compress(data, 9)))
    return 8 * min(sizes)


def source_without_docs(function: Callable) -> str:
    """The function's source, normalised: docstrings and comments dropped, formatting canonical."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def complexity_bits(function: Callable, prior: Sequence[np.ndarray]) -> dict[str, int]:
    """K(Q) = compressed code + compressed prior (float64 bytes), in bits."""
    code = _compressed_bits(source_without_docs(function).encode())
    raw = b"".join(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes() for a in prior)
    prior_bits = _compressed_bits(raw) if raw else 0
    return {"code_bits": code, "prior_bits": prior_bits, "bits": code + prior_bits}


@dataclass
class ModelInputs:
    """What the model needs besides its parameters, for nN task-set sizes and nS checkpoint steps.

    ``complexity`` and ``loss`` are [nN, 2] with columns (M, G).
    """

    num_tasks: np.ndarray
    steps: np.ndarray
    complexity: np.ndarray
    loss: np.ndarray


def log_odds(params: Sequence[float], inputs: ModelInputs, xp=np):
    """log posterior odds M:G, [nN, nS]; ``xp`` is numpy or torch (for autograd)."""
    alpha, beta, gamma = params
    k = xp.as_tensor(inputs.complexity, dtype=xp.float64) if xp is not np else inputs.complexity
    loss = xp.as_tensor(inputs.loss, dtype=xp.float64) if xp is not np else inputs.loss
    steps = xp.as_tensor(inputs.steps, dtype=xp.float64) if xp is not np else inputs.steps.astype(float)
    prior = -LN2 * (k[:, 0] ** beta - k[:, 1] ** beta)
    evidence = steps[None, :] ** (1 - alpha)
    return prior[:, None] - gamma * evidence * (loss[:, 0] - loss[:, 1])[:, None]


def weight_m(params: Sequence[float], inputs: ModelInputs) -> np.ndarray:
    """Posterior weight of M, [nN, nS]."""
    return 1.0 / (1.0 + np.exp(-log_odds(params, inputs)))


def transition_steps(params: Sequence[float], inputs: ModelInputs) -> np.ndarray:
    """The step where the odds M:G cross 1 (0: M from the start; inf: never), per N."""
    alpha, beta, gamma = params
    prior_gap = LN2 * (inputs.complexity[:, 0] ** beta - inputs.complexity[:, 1] ** beta)
    gain = gamma * (inputs.loss[:, 1] - inputs.loss[:, 0])
    out = np.full(len(prior_gap), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = prior_gap / gain
        ok = gain > 0
        out[ok] = np.where(ratio[ok] <= 0, 0.0, np.power(np.maximum(ratio[ok], 0), 1.0 / (1.0 - alpha)))
    return out


def divergence(setting: str, target, mixture, torch_module):
    """Mean divergence of the transformer from the mixture over sequences (and positions)."""
    if setting == "linear-regression":
        return ((target - mixture) ** 2).mean(dim=tuple(range(2, target.dim())))
    eps = 1e-12
    p, q = target.clamp_min(eps), mixture.clamp_min(eps)
    return (p * (p.log() - q.log())).sum(-1).mean(dim=tuple(range(2, target.dim() - 1)))


def fit(setting: str, inputs: ModelInputs, target: np.ndarray, pred_m: np.ndarray, pred_g: np.ndarray,
        mask: np.ndarray, inits: Sequence[Sequence[float]] | None = None) -> dict:
    """Fit (α, β, γ) on the (N, step) cells where ``mask`` is true.

    ``target`` [nN, nS, B, ...] are the transformer's predictions, ``pred_m``
    and ``pred_g`` [nN, B, ...] the predictors' on the same sequences. Several
    starts (the paper's, then two spread ones); the best optimum wins.
    """
    import torch
    from scipy.optimize import minimize

    t = torch.as_tensor(target, dtype=torch.float64)
    m = torch.as_tensor(pred_m, dtype=torch.float64)[:, None]
    g = torch.as_tensor(pred_g, dtype=torch.float64)[:, None]
    keep = torch.as_tensor(mask, dtype=torch.bool)
    if not keep.any():
        raise ValueError("no (N, step) cell to fit on")
    weight_shape = (*t.shape[:2],) + (1,) * (t.dim() - 2)

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.tensor(log_params, dtype=torch.float64, requires_grad=True)
        w = torch.sigmoid(log_odds(torch.exp(x), inputs, xp=torch)).reshape(weight_shape)
        mix = w * m + (1 - w) * g
        loss = divergence(setting, t, mix, torch)[keep].mean()
        loss.backward()
        return float(loss.item()), x.grad.numpy().copy()

    bounds = [(math.log(lo), math.log(hi)) for lo, hi in BOUNDS]
    starts = list(inits or [INITS.get(setting, (0.6, 0.2, 1.0)), (0.3, 0.5, 0.1), (0.9, 0.1, 10.0)])
    best = None
    for start in starts:
        result = minimize(objective, np.log(np.asarray(start, dtype=float)), jac=True, method="L-BFGS-B",
                          bounds=bounds, options={"maxiter": 500})
        if best is None or result.fun < best.fun:
            best = result
    params = [float(v) for v in np.exp(best.x)]
    return {"params": dict(zip(PARAM_NAMES, params)), "loss": float(best.fun), "converged": bool(best.success),
            "message": str(best.message), "iterations": int(best.nit)}
