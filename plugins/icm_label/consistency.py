"""Logical consistency of a label set: the I(D) term of ICM and the two ways to repair a pair.

The constraints are computed once per batch from the testbed's rules and
the claims' keys (:func:`plugins.icm_label.testbeds.consistency_key`); an
assignment then only needs a scan over the constrained pairs whose two
claims are both labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from plugins.icm_label.testbeds import Claim, Testbed, consistency_key

AGREE = "agree"                  # same key: same label
NOT_BOTH_TRUE = "not_both_true"  # different keys: at most one true
NOT_BOTH_FALSE = "not_both_false"
EXACTLY_ONE = "exactly_one"      # both of the above

# The consistent assignments tried for an inconsistent pair (consistency fix).
REPAIRS = {AGREE: ((1, 1), (0, 0)), NOT_BOTH_TRUE: ((1, 0), (0, 1)),
           NOT_BOTH_FALSE: ((1, 0), (0, 1)), EXACTLY_ONE: ((1, 0), (0, 1))}


@dataclass(frozen=True)
class Constraint:
    """A rule between slots ``a < b`` of one batch."""

    a: int
    b: int
    kind: str

    def violated(self, la: int | None, lb: int | None) -> bool:
        if la is None or lb is None:
            return False
        if self.kind == AGREE:
            return la != lb
        if self.kind == NOT_BOTH_TRUE:
            return la == 1 and lb == 1
        if self.kind == NOT_BOTH_FALSE:
            return la == 0 and lb == 0
        return la == lb  # EXACTLY_ONE


def constraints(testbed: Testbed, claims: Sequence[Claim]) -> list[Constraint]:
    """Every constrained pair among ``claims`` (slots are positions in the sequence), groups by ``consistency_id``."""
    keys = [consistency_key(testbed, c) for c in claims]
    groups: dict[str, list[int]] = {}
    for slot, claim in enumerate(claims):
        groups.setdefault(claim.consistency_id, []).append(slot)
    out: list[Constraint] = []
    for members in groups.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                kind = _kind(testbed, keys[a] == keys[b])
                if kind:
                    out.append(Constraint(min(a, b), max(a, b), kind))
    return sorted(out, key=lambda c: (c.a, c.b))


def _kind(testbed: Testbed, same_key: bool) -> str | None:
    if same_key:
        return AGREE if testbed.equal_keys_agree else None
    true_rule, false_rule = testbed.different_keys_not_both_true, testbed.different_keys_not_both_false
    if true_rule and false_rule:
        return EXACTLY_ONE
    if true_rule:
        return NOT_BOTH_TRUE
    if false_rule:
        return NOT_BOTH_FALSE
    return None


def inconsistent(rules: Sequence[Constraint], labels: Sequence[int | None]) -> list[Constraint]:
    """The violated constraints under ``labels`` (``None`` = unlabelled, never inconsistent)."""
    return [r for r in rules if r.violated(labels[r.a], labels[r.b])]
