"""Which demonstrations a target claim sees, and in which order — the same for every backend.

Mutual predictability scores each labelled claim with *all other* labelled
claims of the batch as demonstrations. The order of those demonstrations is
fixed by a binary tree over the batch's slots (claims of one consistency
group are adjacent): to reach slot ``t`` from the root, each level puts the
half of the current range that does *not* hold ``t`` in front, then
descends into the half that does. So

* every target sees every other labelled claim exactly once;
* a target's nearest slots — its own consistency group — come last, right
  before it;
* two targets share the demonstrations of every level above the one where
  their paths split. A backend that keeps the key/value cache of each level
  encodes a batch's ``n`` leave-one-out contexts with about ``n·log2(n)``
  demonstrations instead of ``n²`` — and an OpenAI-compatible server with
  prefix caching (vLLM) profits from the same sharing.

Nothing here imports torch.
"""

from __future__ import annotations

from typing import Sequence

SEPARATOR = "\n\n"  # after each demonstration, as published


def path_blocks(n_slots: int, target: int) -> list[tuple[int, int]]:
    """Slot ranges ``[lo, hi)`` put in front of ``target``, outermost first."""
    if not 0 <= target < n_slots:
        raise IndexError(f"target slot {target} outside 0..{n_slots - 1}")
    blocks = []
    lo, hi = 0, n_slots
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if target < mid:
            blocks.append((mid, hi))
            hi = mid
        else:
            blocks.append((lo, mid))
            lo = mid
    return blocks


def context_slots(labels: Sequence[int | None], target: int) -> list[int]:
    """The labelled slots shown before ``target``, in order (``target`` itself never)."""
    return [s for lo, hi in path_blocks(len(labels), target) for s in range(lo, hi) if labels[s] is not None]


def demonstration(prompt: str, label: int, true_word: str, false_word: str, separator: str = SEPARATOR) -> str:
    """``{prompt}True`` / ``{prompt}False`` followed by the separator."""
    return prompt + (true_word if label else false_word) + separator


def context_text(prompts: Sequence[str], labels: Sequence[int | None], target: int, true_word: str,
                 false_word: str, separator: str = SEPARATOR) -> str:
    """The full text a backend scores for ``target``: its demonstrations, then its prompt."""
    demos = "".join(demonstration(prompts[s], labels[s], true_word, false_word, separator)  # type: ignore[arg-type]
                    for s in context_slots(labels, target))
    return demos + prompts[target]
