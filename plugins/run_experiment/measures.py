"""What each task reports: the methods compared, their per-item column, and bootstrap summaries (no torch).

Every measure is the mean of one per-item CSV column with its n and a 95%
percentile bootstrap interval (``plugins.common.stats``); accuracies are
means of 0/1 columns (0.5 for the order-averaged metalinguistic score of an
item judged right in one order only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from plugins.common.stats import accuracy


@dataclass(frozen=True)
class Measure:
    name: str
    column: str
    kind: str  # "accuracy" or "logprob" or "score"
    demand: str  # "low", "high" or "" (a diagnostic, not a method)


MEASURES: dict[str, list[Measure]] = {
    "digit_mat": [
        Measure("forced choice", "mc_response_correct", "accuracy", "low"),
        Measure("generation", "generated_response_correct", "accuracy", "high"),
        Measure("forced choice (mean log-prob)", "mc_response_mean_correct", "accuracy", ""),
    ],
    "crt": [
        Measure("forced choice", "mc_response_correct", "accuracy", "low"),
        Measure("generation", "generated_response_correct", "accuracy", "high"),
        Measure("forced choice: intuitive", "mc_response_intuitive", "accuracy", ""),
        Measure("generation: intuitive", "generated_response_intuitive", "accuracy", ""),
        Measure("forced choice (summed log-prob)", "mc_sum_response_correct", "accuracy", ""),
    ],
    "lambada": [
        Measure("direct", "direct_logprob", "logprob", "low"),
        Measure("metalinguistic", "meta_logprob", "logprob", "high"),
        Measure("direct: word is greedy", "direct_greedy", "accuracy", ""),
        Measure("metalinguistic: word is greedy", "meta_greedy", "accuracy", ""),
        Measure("KL(direct || meta), nats", "kl_divergence", "score", ""),
        Measure("Spearman r, whole vocabulary", "spearman_r_all", "score", ""),
        Measure("Spearman r, direct top-100", "spearman_r_top100", "score", ""),
    ],
}
MEASURES["blimp"] = MEASURES["dgl"] = [
    Measure("direct", "direct_correct", "accuracy", "low"),
    Measure("metalinguistic (order-averaged)", "meta_avg", "accuracy", "high"),
    Measure("metalinguistic strict (both orders)", "meta_correct", "accuracy", ""),
    Measure("metalinguistic lenient (either order)", "meta_correct_lenient", "accuracy", ""),
    Measure("metalinguistic, good sentence first", "meta_good_correct", "accuracy", ""),
    Measure("metalinguistic, bad sentence first", "meta_bad_correct", "accuracy", ""),
    Measure("answers '1' in both orders", "meta_says_1_both", "score", ""),
]


def methods(task: str) -> list[Measure]:
    """The two methods of the paper's comparison: low demand first, then high demand."""
    return [m for m in MEASURES[task] if m.demand]


def to_number(value: Any) -> float:
    """A CSV cell as a number: True/False → 1/0; empty → NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text in ("True", "False"):
        return float(text == "True")
    return float(text) if text else math.nan


def summarize(task: str, rows: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{measure name: {"mean", "n", "lo", "hi", "kind", "column", "demand"}}`` over the rows (NaNs skipped)."""
    out = {}
    for m in MEASURES[task]:
        values = [to_number(r[m.column]) for r in rows if m.column in r]
        values = [v for v in values if not math.isnan(v)]
        stat = accuracy(values, seed=seed)
        out[m.name] = {"mean": stat["acc"], "n": stat["n"], "lo": stat["lo"], "hi": stat["hi"], "kind": m.kind,
                       "column": m.column, "demand": m.demand}
    return out


def fmt(stat: Mapping[str, Any]) -> str:
    """``0.82 [0.71, 0.90]`` (log-probs with one decimal more)."""
    if not stat or not stat.get("n"):
        return "-"
    digits = 2 if stat["kind"] == "accuracy" else 3
    return f"{stat['mean']:.{digits}f} [{stat['lo']:.{digits}f}, {stat['hi']:.{digits}f}]"
