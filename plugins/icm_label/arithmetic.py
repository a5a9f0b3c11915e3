"""A small arithmetic domain: true facts to pretrain on, and unlabelled claims to label (no torch).

Used by scripts/make_icm_example.py (the example model and data sets) and
by the tests. Facts are ``a + b = c`` for single-digit ``a``, ``b``; the
pretraining text states them in several phrasings and never labels a
claim: the words ``True`` and ``False`` never occur in it.
"""

from __future__ import annotations

import random
from typing import Any

DIGITS = range(10)


def fact_texts(rng: random.Random, passes: int = 6) -> list[str]:
    """Every fact in every phrasing, ``passes`` times, shuffled: lines of true arithmetic."""
    forms = ["{a} + {b} = {c}.", "{a} plus {b} is {c}.", "The sum of {a} and {b} is {c}.",
             "Question: What is {a} + {b}?\nClaim: {a} + {b} = {c}.", "What is {a} + {b}? It is {c}."]
    texts = [form.format(a=a, b=b, c=a + b) for _ in range(passes) for a in DIGITS for b in DIGITS for form in forms]
    rng.shuffle(texts)
    # pack a few facts per text so the model sees several facts in one window
    return ["\n".join(texts[i:i + 4]) for i in range(0, len(texts), 4)]


def wrong_answer(rng: random.Random, a: int, b: int) -> int:
    """A plausible wrong sum: off by one or two, or the difference instead of the sum."""
    c = a + b
    options = {c - 2, c - 1, c + 1, c + 2, abs(a - b)} - {c}
    return rng.choice(sorted(v for v in options if v >= 0))


def verification_claims(questions: list[tuple[int, int]], rng: random.Random, per_question: int = 4,
                        start_id: int = 0) -> list[dict[str, Any]]:
    """GSM8K-verification-style claims: ``per_question`` candidate solutions per question.

    Each question gets one or two correct solutions and wrong ones (two wrong
    candidates may share an answer), shuffled; ``answer`` is the solution's
    final answer, ``label`` the gold truth (for reporting only).
    """
    out = []
    for qid, (a, b) in enumerate(questions, start=start_id):
        n_right = rng.choice([1, 2])
        answers = [a + b] * n_right + [wrong_answer(rng, a, b) for _ in range(per_question - n_right)]
        rng.shuffle(answers)
        for c in answers:
            out.append({"question": f"What is {a} + {b}?", "choice": f"{a} + {b} = {c}.", "answer": str(c),
                        "label": int(c == a + b), "consistency_id": qid})
    return out


def split_questions(rng: random.Random, n_train: int, n_test: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Disjoint train and test questions (pairs of digits)."""
    pairs = [(a, b) for a in DIGITS for b in DIGITS]
    rng.shuffle(pairs)
    return pairs[:n_train], pairs[n_train:n_train + n_test]
