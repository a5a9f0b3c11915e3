#!/usr/bin/env python
"""Make the lm-eval data of ``workspace.example/``, in the layouts a hub download gives.

Run once by a maintainer (not in CI; the outputs are committed)::

    python scripts/make_example_lm_eval_data.py [--workspace workspace.example] [--seed 0]

Derived deterministically from the committed LiReFs example files
(``datasets/lirefs/mmlu-pro-3000samples.json`` and its few-shot split), so
the questions are about the example's generated world, which the tiny models
were trained on. Writes:

* ``datasets/TIGER-Lab/MMLU-Pro/data/{test,validation}-00000-of-00001.parquet``
  — MMLU-Pro's columns (question_id, question, options, answer, answer_index,
  cot_content, category, src); the 240 questions as ``test``, the 18 few-shot
  examples as ``validation``. MMLU-Pro has no ``geography`` category, so those
  questions are filed under ``other``.
* ``datasets/cais/mmlu/<subject>/{dev,validation,test}-00000-of-00001.parquet``
  — MMLU's columns (question, subject, choices, answer as an int), four choices
  per question (the answer and the first three distractors, shuffled with
  ``--seed``); each LiReFs category is filed under an MMLU subject
  (:data:`SUBJECT_OF`) so lm-eval's subject groups apply. ``dev`` holds the
  first 5 questions of a subject (lm-eval's few-shot split), ``validation`` the
  next 2, ``test`` the rest.
* ``datasets/ybisk/piqa/data/{train,validation}-00000-of-00001.parquet`` —
  PIQA's columns (goal, sol1, sol2, label): the question, its answer and one
  distractor in a seeded order; memorizing questions go to ``train`` (40) and
  ``validation`` (the rest), likewise the reasoning ones.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SUBJECT_OF = {  # LiReFs category -> MMLU subject folder
    "geography": "high_school_geography",
    "economics": "high_school_macroeconomics",
    "history": "high_school_world_history",
    "biology": "high_school_biology",
    "math": "elementary_mathematics",
    "physics": "high_school_physics",
}
MMLU_PRO_CATEGORY = {"geography": "other"}  # categories MMLU-Pro does not have
MMLU_DEV, MMLU_VALIDATION = 5, 2
PIQA_TRAIN_EACH = 20


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    """One parquet file, written atomically (as the hub's ``*-00000-of-00001.parquet``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runner.atomic import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), str(tmp))


def mmlu_pro_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src")
    rows = []
    for entry in entries:
        row = {k: entry[k] for k in keys}
        row["category"] = MMLU_PRO_CATEGORY.get(row["category"], row["category"])
        rows.append(row)
    return rows


def four_choices(entry: dict[str, Any], rng: random.Random) -> tuple[list[str], int]:
    answer = entry["options"][entry["answer_index"]]
    distractors = [o for k, o in enumerate(entry["options"]) if k != entry["answer_index"]][:3]
    choices = [answer] + distractors
    rng.shuffle(choices)
    return choices, choices.index(answer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(REPO / "workspace.example"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ws = Path(args.workspace)
    from datasets import load_from_disk

    entries = json.loads((ws / "datasets/lirefs/mmlu-pro-3000samples.json").read_text())
    few_shot = load_from_disk(str(ws / "datasets/lirefs/mmlu-pro"))["validation"].to_list()

    pro = ws / "datasets/TIGER-Lab/MMLU-Pro/data"
    write_parquet(pro / "test-00000-of-00001.parquet", mmlu_pro_rows(entries))
    write_parquet(pro / "validation-00000-of-00001.parquet", mmlu_pro_rows(few_shot))

    rng = random.Random(args.seed)
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        choices, answer = four_choices(entry, rng)
        subject = SUBJECT_OF[entry["category"]]
        by_subject.setdefault(subject, []).append(
            {"question": entry["question"], "subject": subject, "choices": choices, "answer": answer})
    for subject, rows in sorted(by_subject.items()):
        folder = ws / "datasets/cais/mmlu" / subject
        splits = {"dev": rows[:MMLU_DEV], "validation": rows[MMLU_DEV:MMLU_DEV + MMLU_VALIDATION],
                  "test": rows[MMLU_DEV + MMLU_VALIDATION:]}
        for split, part in splits.items():
            write_parquet(folder / f"{split}-00000-of-00001.parquet", part)

    rng = random.Random(args.seed + 1)
    piqa: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    seen = {"reasoning": 0, "memorizing": 0}
    for entry in entries:
        kind = "reasoning" if entry["memory_reason_score"] > 0.5 else "memorizing"
        answer = entry["options"][entry["answer_index"]]
        wrong = rng.choice([o for k, o in enumerate(entry["options"]) if k != entry["answer_index"]])
        label = rng.randrange(2)
        sols = (answer, wrong) if label == 0 else (wrong, answer)
        split = "train" if seen[kind] < PIQA_TRAIN_EACH else "validation"
        seen[kind] += 1
        piqa[split].append({"goal": entry["question"], "sol1": sols[0], "sol2": sols[1], "label": label})
    for split, rows in piqa.items():
        write_parquet(ws / f"datasets/ybisk/piqa/data/{split}-00000-of-00001.parquet", rows)
    print(f"MMLU-Pro: {len(entries)} test, {len(few_shot)} validation; MMLU: "
          + ", ".join(f"{s} {len(r)}" for s, r in sorted(by_subject.items()))
          + f"; PIQA: {len(piqa['train'])} train, {len(piqa['validation'])} validation")


if __name__ == "__main__":
    main()
