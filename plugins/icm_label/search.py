"""The ICM search (Wen et al. 2025): simulated annealing on U(D) = alpha·MP(D) − I(D).

One batch of claims is searched at a time. State (labels, counters, the
random generator, the trajectory) is a plain JSON-able dict, saved every
``checkpoint_every`` iterations, so a killed run continues from its last
checkpoint and — the backend being deterministic — ends with the same labels
as a run that was never interrupted.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from plugins.icm_label.backends import Backend, label_of
from plugins.icm_label.consistency import REPAIRS, Constraint, constraints, inconsistent
from plugins.icm_label.testbeds import Claim, Testbed

Labels = list  # list[int | None], one entry per slot of the batch


@dataclass(frozen=True)
class SearchConfig:
    """The seed's arguments (same names, same meaning) plus the choices the seed hard-codes."""

    alpha: float = 30.0
    num_seed: int = 8
    K: int = 3000
    consistency_fix_K: int = 10
    decay: float = 0.99
    initial_T: float = 10.0
    final_T: float = 0.01
    scheduler: str = "log"
    seed: int = 27565976
    mp_reduction: str = "mean"   # the published code averages; "sum" is the paper's formula
    group_weight: float = 100.0  # sampling weight of unlabelled claims whose group has a label

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "SearchConfig":
        import dataclasses

        return cls(**{f.name: params[f.name] for f in dataclasses.fields(cls) if f.name in params})


def temperature(config: SearchConfig, accepted: int) -> float:
    """T after ``accepted`` accepted changes (the schedule counts accepted changes, not iterations)."""
    if config.scheduler == "log":
        return max(config.final_T, config.initial_T / (1 + 2 * math.log(1 + accepted)))
    if config.scheduler == "exp":
        return max(config.final_T, config.initial_T * config.decay ** accepted)
    raise ValueError(f"scheduler must be 'log' or 'exp', not {config.scheduler!r}")


def accept(delta: float, temp: float, rng: random.Random) -> bool:
    """Metropolis rule: always take an improvement, a loss ``delta < 0`` with probability exp(delta / T)."""
    if delta >= 0:
        return True
    if temp <= 0:
        return False
    return rng.random() < math.exp(delta / temp)


class Energy:
    """U(D) with its parts, memoised per label assignment (LRU), so revisiting a label set costs nothing."""

    def __init__(self, backend: Backend, claims: Sequence[Claim], rules: Sequence[Constraint], config: SearchConfig,
                 memo: int = 256) -> None:
        self.backend, self.claims, self.rules, self.config = backend, list(claims), list(rules), config
        self._memo: OrderedDict[tuple, dict[int, float]] = OrderedDict()
        self._size = memo
        self.evaluations = 0

    def scores(self, labels: Sequence[int | None]) -> dict[int, float]:
        """Leave-one-out log-odds of every labelled slot."""
        key = tuple(labels)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        targets = [i for i, y in enumerate(labels) if y is not None]
        values = self.backend.loo(self.claims, labels, targets) if targets else []
        result = dict(zip(targets, values))
        self.evaluations += 1
        self._memo[key] = result
        while len(self._memo) > self._size:
            self._memo.popitem(last=False)
        return result

    def parts(self, labels: Sequence[int | None]) -> dict[str, float]:
        scores = self.scores(labels)
        signed = [s if labels[i] == 1 else -s for i, s in scores.items()]
        if not signed:
            mp = 0.0
        elif self.config.mp_reduction == "sum":
            mp = float(sum(signed))
        else:
            mp = float(sum(signed) / len(signed))
        bad = len(inconsistent(self.rules, labels))
        return {"energy": self.config.alpha * mp - bad, "mp": mp, "inconsistent": bad}

    def __call__(self, labels: Sequence[int | None]) -> float:
        return self.parts(labels)["energy"]

    def predict(self, labels: Sequence[int | None], slot: int) -> float:
        """Log-odds of ``slot`` with every other labelled claim in context."""
        key = tuple(labels)
        if labels[slot] is not None and key in self._memo:
            return self._memo[key][slot]
        return self.backend.loo(self.claims, labels, [slot])[0]


def consistency_fix(energy: Energy, labels: Sequence[int | None], rounds: int, rng: random.Random) -> tuple[Labels, int]:
    """Repair inconsistent pairs for up to ``rounds`` rounds, as published.

    Each round visits the inconsistent pairs in random order; for a pair it
    tries both consistent assignments and keeps the one with the higher U;
    that repair is applied if U is at least the best seen in this call (the
    first repair always is) and the next round starts. The call stops when
    nothing is inconsistent or no pair's repair reaches the best U. Returns
    the labels and the number of repairs applied.
    """
    current = list(labels)
    best = -math.inf
    applied = 0
    for _ in range(rounds):
        bad = inconsistent(energy.rules, current)
        if not bad:
            break
        rng.shuffle(bad)
        improved = False
        for pair in bad:
            options = []
            for la, lb in REPAIRS[pair.kind]:
                candidate = list(current)
                candidate[pair.a], candidate[pair.b] = la, lb
                options.append((energy(candidate), candidate))
            value, candidate = max(options, key=lambda o: o[0])
            if value >= best:
                current, best, improved = candidate, value, True
                applied += 1
                break
        if not improved:
            break
    return current, applied


def initial_state(claims: Sequence[Claim], config: SearchConfig, batch: int) -> dict[str, Any]:
    """``num_seed`` random claims labelled at random, exactly half of them true (the odd one false)."""
    rng = random.Random(f"{config.seed}:batch{batch}")
    n = len(claims)
    k = min(config.num_seed, n)
    labels: Labels = [None] * n
    values = [1] * (k // 2) + [0] * (k - k // 2)
    rng.shuffle(values)
    for slot, value in zip(rng.sample(range(n), k), values):
        labels[slot] = value
    return {"batch": batch, "iteration": 0, "accepted": 0, "labels": labels, "rng": _rng_state(rng),
            "trajectory": [], "done": False}


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from(state: list) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def run_batch(backend: Backend, testbed: Testbed, claims: Sequence[Claim], config: SearchConfig,
              state: dict[str, Any], save: Callable[[dict[str, Any]], None] | None = None, checkpoint_every: int = 10,
              progress: Callable[[Iterable[int]], Iterator[int]] | None = None) -> dict[str, Any]:
    """Run (or continue) the search of one batch from ``state``; returns the final state.

    ``save(state)`` is called every ``checkpoint_every`` iterations and at the
    end; ``progress`` wraps the iteration range (a killed run is simulated by
    raising from it).
    """
    rules = constraints(testbed, claims)
    energy = Energy(backend, claims, rules, config)
    rng = _rng_from(state["rng"])
    labels: Labels = list(state["labels"])
    gold = [c.label for c in claims]
    has_gold = all(g is not None for g in gold)
    groups: dict[str, list[int]] = {}
    for slot, claim in enumerate(claims):
        groups.setdefault(claim.consistency_id, []).append(slot)

    def row(iteration: int, **extra: Any) -> dict[str, Any]:
        parts = energy.parts(labels)
        labelled = [i for i, y in enumerate(labels) if y is not None]
        out = {"batch": state["batch"], "iteration": iteration, **extra, "energy": parts["energy"],
               "mp": parts["mp"], "inconsistent": parts["inconsistent"], "labelled": len(labelled),
               "accepted_total": state["accepted"], "temperature": temperature(config, state["accepted"])}
        if has_gold:
            out["accuracy"] = (sum(labels[i] == gold[i] for i in labelled) / len(labelled)) if labelled else None
        return out

    if state["iteration"] == 0 and not state["trajectory"]:
        labels, _ = consistency_fix(energy, labels, config.consistency_fix_K, rng)
        state["labels"] = labels
        state["trajectory"].append(row(0, claim=None, previous=None, proposed=None, changed=False, accepted=True,
                                       candidate_energy=None, delta=None))
    current = energy(labels)
    steps = range(state["iteration"] + 1, config.K + 1)
    for iteration in (progress(steps) if progress else steps):
        temp = temperature(config, state["accepted"])
        weights = [config.group_weight if labels[s] is None and any(labels[m] is not None for m in groups[c.consistency_id])
                   else 1.0 for s, c in enumerate(claims)]
        slot = rng.choices(range(len(claims)), weights=weights)[0]
        proposed = label_of(energy.predict(labels, slot))
        previous = labels[slot]
        if proposed == previous:
            state["trajectory"].append(row(iteration, claim=claims[slot].index, previous=previous, proposed=proposed,
                                           changed=False, accepted=False, candidate_energy=None, delta=None))
        else:
            candidate = list(labels)
            candidate[slot] = proposed
            candidate, _ = consistency_fix(energy, candidate, config.consistency_fix_K, rng)
            value = energy(candidate)
            delta = value - current
            taken = accept(delta, temp, rng)
            if taken:
                labels, current = candidate, value
                state["accepted"] += 1
            state["trajectory"].append(row(iteration, claim=claims[slot].index, previous=previous, proposed=proposed,
                                           changed=True, accepted=taken, candidate_energy=value, delta=delta))
            state["trajectory"][-1]["temperature"] = temp
        state["labels"], state["iteration"], state["rng"] = labels, iteration, _rng_state(rng)
        if save and checkpoint_every > 0 and iteration % checkpoint_every == 0:
            save(state)
    state["done"] = True
    state["labels"] = labels
    state["final"] = energy.parts(labels)
    state["energy_evaluations"] = energy.evaluations
    if save:
        save(state)
    return state


def split_batches(claims: Sequence[Claim], batch_size: int, seed: int) -> list[list[Claim]]:
    """Groups-preserving batches of about ``batch_size`` claims: groups shuffled (seeded), packed in order.

    A group larger than ``batch_size`` becomes a batch of its own. Inside a
    batch, claims of one group are adjacent (they come last in each other's
    contexts, see :mod:`plugins.icm_label.contexts`).
    """
    groups: dict[str, list[Claim]] = {}
    for claim in claims:
        groups.setdefault(claim.consistency_id, []).append(claim)
    order = list(groups)
    random.Random(f"{seed}:groups").shuffle(order)
    batches: list[list[Claim]] = []
    current: list[Claim] = []
    for gid in order:
        members = groups[gid]
        if current and len(current) + len(members) > batch_size:
            batches.append(current)
            current = []
        current = current + members
    if current:
        batches.append(current)
    return batches
