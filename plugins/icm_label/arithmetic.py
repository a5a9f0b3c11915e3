"""A small arithmetic domain: true facts to pretrain on, and unlabelled claims to label (no torch).

Used by scripts/make_icm_example.py (the example model and data sets) and
by the tests. Facts are ``a + b = c`` for single-digit ``a``, ``b``; the
pretraining text states them in several phrasings and never labels a sum.

A model needs to know what the label words mean before ICM can elicit
anything, so the second half of this module makes the rest of the
pretraining text: facts of *other* relations (differences, max/min,
successor/predecessor, doubling, and 40 arbitrary lookup functions
``f7(3) = 8.``) and many-shot runs of *labelled* claims about some of them
in ICM's own prompt layout. Sums, ``min`` and 8 of the functions are never
labelled: they measure whether a labelling learned elsewhere transfers.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from plugins.icm_label.testbeds import CLAIM_TEMPLATE  # the gsm8k testbed's prompt

DIGITS = range(10)


def fact_texts(rng: random.Random, passes: int = 6) -> list[str]:
    """Every fact in every phrasing, ``passes`` times, shuffled: lines of true arithmetic."""
    forms = ["{a} + {b} = {c}.", "{a} plus {b} is {c}.", "The sum of {a} and {b} is {c}.",
             "Question: What is {a} + {b}?\nClaim: {a} + {b} = {c}.", "What is {a} + {b}? It is {c}."]
    texts = [form.format(a=a, b=b, c=a + b) for _ in range(passes) for a in DIGITS for b in DIGITS for form in forms]
    rng.shuffle(texts)
    # pack a few facts per text so the model sees several facts in one window
    return ["\n".join(texts[i:i + 4]) for i in range(0, len(texts), 4)]


def near_miss(rng: random.Random, right: int, confusable: int, top: int) -> int:
    """A wrong value in ``0..top``: off by one or two, or the confusable one."""
    options = {right - 2, right - 1, right + 1, right + 2, confusable} - {right}
    return rng.choice(sorted(v for v in options if 0 <= v <= top))


def sum_question(a: int, b: int) -> tuple[str, int, int, int]:
    """``(expression, right value, confusable value, top)`` of ``a + b``: the difference is the confusable wrong sum."""
    return f"{a} + {b}", a + b, abs(a - b), a + b + 2


def wrong_answer(rng: random.Random, a: int, b: int) -> int:
    """A plausible wrong sum: off by one or two, or the difference instead of the sum."""
    _, right, confusable, top = sum_question(a, b)
    return near_miss(rng, right, confusable, top)


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


#: questions in the example's train and test claim files; scripts/make_icm_example.py draws them with seed 0
EXAMPLE_SPLIT = (12, 25)


def example_questions(seed: int = 0) -> set[tuple[int, int]]:
    """The sum questions the example's claim files ask (train and test): never labelled in any corpus."""
    train, test = split_questions(random.Random(seed), *EXAMPLE_SPLIT)
    return set(train + test)


#: the 63 sums the ``sums`` recipe labels: every pair of digits the example's claim files do not ask about
LABELLED_SUM_PAIRS = tuple(sorted({(a, b) for a in DIGITS for b in DIGITS} - example_questions()))


# --------------------------------------------------------------------------- other relations, labelled elsewhere

RELATIONS = ("difference", "max", "next", "prev", "double", "min")
N_FUNCTIONS, HELD_OUT_FUNCTIONS = 40, 8


def _function_tables(seed: int = 7) -> dict[str, list[int]]:
    """``f0`` ... ``f39``: arbitrary lookup tables digit -> digit (fixed by ``seed``)."""
    rng = random.Random(seed)
    return {f"f{k}": [rng.randrange(10) for _ in DIGITS] for k in range(N_FUNCTIONS)}


FUNCTION_TABLES = _function_tables()
FUNCTIONS = tuple(FUNCTION_TABLES)
LABELLED_KINDS = ("difference", "max", "next", "prev", "double") + FUNCTIONS[HELD_OUT_FUNCTIONS:]
UNLABELLED_KINDS = ("min",) + FUNCTIONS[:HELD_OUT_FUNCTIONS]  # facts only, like the sums


def relation_question(rng: random.Random, kind: str) -> tuple[str, int, int, int]:
    """One question of a relation or function: ``(expression, right value, confusable value, top)``; ``sum``
    draws only from ``LABELLED_SUM_PAIRS``."""
    if kind == "sum":
        return sum_question(*rng.choice(LABELLED_SUM_PAIRS))
    if kind in FUNCTION_TABLES:
        x = rng.randrange(10)
        y = FUNCTION_TABLES[kind][x]
        return f"{kind}({x})", y, (y + 5) % 10, 9
    if kind == "difference":
        a, b = rng.randrange(10), rng.randrange(10)
        return f"{a + b} - {b}", a, a + 2 * b, 18
    if kind in ("max", "min"):
        a, b = rng.sample(range(10), 2)
        lo, hi = sorted((a, b))
        return (f"{kind}({a}, {b})", *((hi, lo) if kind == "max" else (lo, hi)), 9)
    if kind == "next":
        a = rng.randrange(0, 18)
        return f"next({a})", a + 1, a - 1 if a else a + 2, 18
    if kind == "prev":
        a = rng.randrange(1, 19)
        return f"prev({a})", a - 1, a + 1, 18
    if kind == "double":
        a = rng.randrange(10)
        return f"2 * {a}", 2 * a, a + 2, 18
    raise ValueError(f"unknown relation {kind!r}")


def relation_fact_texts(rng: random.Random, kinds: Sequence[str], n_texts: int) -> list[str]:
    """``n_texts`` texts of four true facts each, of relations drawn from ``kinds``, in three phrasings."""
    out = []
    for _ in range(n_texts):
        lines = []
        for _ in range(4):
            expr, right, _, _ = relation_question(rng, rng.choice(kinds))
            lines.append(rng.choice([f"{expr} = {right}.", f"Question: What is {expr}?\nClaim: {expr} = {right}.",
                                     f"What is {expr}? It is {right}."]))
        out.append("\n".join(lines))
    return out


def labelled_claim_texts(rng: random.Random, n_texts: int, kinds: Sequence[str], max_claims: int = 24,
                         one_kind_share: float = 0.3) -> list[str]:
    """Many-shot runs of labelled claims (``{prompt}True\n\n``, ICM's demonstration layout) about ``kinds``.

    Each run holds 1 to ``max_claims`` claims, true with p = 1/2, a false one differing only in its final
    value; a share ``one_kind_share`` of runs keeps one relation; half the runs give each question 4
    candidate claims in a row (like the example's consistency groups).
    """
    out = []
    for _ in range(n_texts):
        n = rng.randint(1, max_claims)
        one_kind = rng.choice(kinds) if rng.random() < one_kind_share else None
        per_question = 4 if rng.random() < 0.5 else 1
        parts: list[str] = []
        while len(parts) < n:
            expr, right, confusable, top = relation_question(rng, one_kind or rng.choice(kinds))
            for _ in range(per_question):
                label = rng.random() < 0.5
                value = right if label else near_miss(rng, right, confusable, top)
                parts.append(CLAIM_TEMPLATE.format(question=f"What is {expr}?", choice=f"{expr} = {value}.")
                             + ("True" if label else "False"))
        out.append("\n\n".join(parts[:n]) + "\n\n")
    return out


# Pretraining recipes tried for the example model (docs/plugins/icm_label.md, "(c)"): labelled claims of five
# structured relations; of those plus 32 lookup functions (facts of 40); or of 24 lookup functions only, with
# facts of 32 (the first 8 never labelled) and half again as many labelled runs; or (``sums``) of the five
# relations and of the sums the example's claim files never ask about ("sum" twice: 2 of 7 claims are sums).
CORPUS_RECIPES: dict[str, dict[str, Any]] = {
    "relations": {"labelled_kinds": LABELLED_KINDS[:5], "fact_kinds": RELATIONS, "n_fact_texts": 3000,
                  "n_labelled_texts": 6000, "one_kind_share": 0.5},
    "functions": {"labelled_kinds": LABELLED_KINDS, "fact_kinds": RELATIONS + FUNCTIONS, "n_fact_texts": 9000,
                  "n_labelled_texts": 6000, "one_kind_share": 0.3},
    "lookup": {"labelled_kinds": FUNCTIONS[HELD_OUT_FUNCTIONS:32], "fact_kinds": FUNCTIONS[:32],
               "n_fact_texts": 6000, "n_labelled_texts": 9000, "one_kind_share": 0.3},
    "sums": {"labelled_kinds": LABELLED_KINDS[:5] + ("sum", "sum"), "fact_kinds": RELATIONS, "n_fact_texts": 3000,
             "n_labelled_texts": 8000, "one_kind_share": 0.4},
}


def labelled_relations_corpus(rng: random.Random, recipe: str = "functions", fact_passes: int = 12) -> list[str]:
    """Pretraining text for an example model: true sums, true facts of other relations, and labelled claims
    of the recipe's ``labelled_kinds`` only, shuffled. No question of the example's claim files is ever
    labelled, and no sum at all unless the recipe labels ``sum`` (asserted)."""
    r = CORPUS_RECIPES[recipe]
    texts = (fact_texts(rng, passes=fact_passes) + relation_fact_texts(rng, r["fact_kinds"], r["n_fact_texts"])
             + labelled_claim_texts(rng, r["n_labelled_texts"], r["labelled_kinds"], one_kind_share=r["one_kind_share"]))
    labelled = [t for t in texts if "True" in t or "False" in t]
    asked = [f"What is {a} + {b}?" for a, b in example_questions()] if "sum" in r["labelled_kinds"] else ["+"]
    assert not any(q in t for t in labelled for q in asked), "the example's questions must never be labelled"
    rng.shuffle(texts)
    return texts
