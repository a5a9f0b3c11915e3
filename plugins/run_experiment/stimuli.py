"""The published stimulus files of the five tasks: where they live, how they are read and checked (no torch).

Files are read as published (Hu & Frank 2024, ``external_stimuli/``; LAMBADA
as EleutherAI's ``lambada_openai`` JSON lines) from the workspace:

=========  ===========================================================  ==========================================
task       default file (under ``W/``)                                  format
=========  ===========================================================  ==========================================
digit_mat  datasets/jennhu/lm-task-demands/digit_mat/all_problems.json  the published ``all_problems.npz``, imported
                                                                        once to JSON by ``import_digit_mat``
crt        datasets/jennhu/lm-task-demands/crt/stimuli.csv              condition,item_id,question,total_cost,more,
                                                                        correct,intuitive,t
lambada    datasets/EleutherAI/lambada_openai/lambada_test_en.jsonl     one ``{"text": ...}`` per line
blimp      datasets/jennhu/lm-task-demands/blimp/stimuli.csv            good_sentence,bad_sentence,category,
                                                                        category_fine,blimp_UID,blimp_pairID,item_id
dgl        datasets/jennhu/lm-task-demands/dgl/stimuli.csv              item_id,phenomenon,test_item,
                                                                        original_condition,sentence_grammatical,
                                                                        sentence_ungrammatical
=========  ===========================================================  ==========================================

A malformed file is one :class:`StimulusError` naming the file and every
bad row (line number as an editor shows it), before any model is loaded.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

TASKS = ("digit_mat", "crt", "lambada", "blimp", "dgl")
CRT_CONDITIONS = ("crt1", "crt2", "crt3")
DEFAULT_FILES = {
    "digit_mat": "datasets/jennhu/lm-task-demands/digit_mat/all_problems.json",
    "crt": "datasets/jennhu/lm-task-demands/crt/stimuli.csv",
    "lambada": "datasets/EleutherAI/lambada_openai/lambada_test_en.jsonl",
    "blimp": "datasets/jennhu/lm-task-demands/blimp/stimuli.csv",
    "dgl": "datasets/jennhu/lm-task-demands/dgl/stimuli.csv",
}
#: columns each CSV must have, and which of them must be non-empty in every row
CSV_COLUMNS = {
    "crt": (("condition", "item_id", "question", "total_cost", "more", "correct", "intuitive", "t"),
            ("condition", "item_id", "question", "correct", "intuitive")),
    "blimp": (("good_sentence", "bad_sentence", "category", "item_id"), ("good_sentence", "bad_sentence", "item_id")),
    "dgl": (("item_id", "phenomenon", "sentence_grammatical", "sentence_ungrammatical"),
            ("item_id", "sentence_grammatical", "sentence_ungrammatical")),
}
#: options a CRT condition needs besides correct/intuitive
CRT_EXTRA = {"crt1": ("total_cost", "more"), "crt2": (), "crt3": ("t",)}
_MAX_LISTED = 20


class StimulusError(ValueError):
    """A stimulus file cannot be used; the message names the file and every bad row."""

    def __init__(self, path: Path | str, problems: Sequence[str]):
        self.path, self.problems = Path(path), list(problems)
        listed = self.problems[:_MAX_LISTED]
        more = f"\n  ... and {len(self.problems) - _MAX_LISTED} more" if len(self.problems) > _MAX_LISTED else ""
        super().__init__(f"stimulus file {path}:\n  - " + "\n  - ".join(listed) + more)


def load_stimuli(task: str, path: Path | str, condition: str = "", max_per_type: int = 0) -> list[dict[str, Any]]:
    """The items of ``task`` (one dict each, ``item_id`` always set), checked; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise StimulusError(path, ["the file does not exist"])
    if task == "digit_mat":
        return load_digit_mat(path, max_per_type)
    if task == "lambada":
        return load_lambada(path)
    if task not in CSV_COLUMNS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    rows = _read_csv(path, *CSV_COLUMNS[task])
    if task == "crt":
        rows = [r for r in rows if r["condition"] == condition]
        if not rows:
            raise StimulusError(path, [f"no row has condition {condition!r}"])
        problems = [f"line {r['_line']}: column {col!r} is empty (condition {condition} scores it as an option)"
                    for r in rows for col in CRT_EXTRA[condition] if not r[col].strip()]
        if problems:
            raise StimulusError(path, problems)
    return rows


def _read_csv(path: Path, columns: Sequence[str], required: Sequence[str]) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise StimulusError(path, [f"line 1 (header): missing column(s) {', '.join(missing)}; "
                                       f"the header has: {', '.join(header) or 'nothing'}"])
        rows, problems, seen = [], [], {}
        for row in reader:
            line = reader.line_num
            if None in row or any(v is None for v in row.values()):
                problems.append(f"line {line}: {len(header)} columns expected, the row has a different number")
                continue
            empty = [c for c in required if not row[c].strip()]
            if empty:
                problems.append(f"line {line} (item {row.get('item_id') or '?'}): empty {', '.join(empty)}")
                continue
            key = (row.get("condition", ""), row["item_id"])
            if key in seen:
                problems.append(f"line {line}: item_id {row['item_id']} repeats line {seen[key]}")
            seen[key] = line
            rows.append({**row, "_line": line})
    if problems:
        raise StimulusError(path, problems)
    if not rows:
        raise StimulusError(path, ["no rows"])
    return rows


def load_lambada(path: Path) -> list[dict[str, Any]]:
    """LAMBADA passages split into prefix and final word (the last whitespace-separated token)."""
    items, problems = [], []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(line).get("text")
            except (json.JSONDecodeError, AttributeError):
                problems.append(f"line {line_no}: not a JSON object")
                continue
            if not isinstance(text, str) or len(text.split()) < 2:
                problems.append(f"line {line_no}: 'text' must be a passage of at least two words")
                continue
            prefix, word = text.rstrip().rsplit(None, 1)
            items.append({"item_id": len(items), "prefix": prefix.rstrip(), "final_word": word, "_line": line_no})
    if problems:
        raise StimulusError(path, problems)
    if not items:
        raise StimulusError(path, ["no passages"])
    return items


def load_digit_mat(path: Path, max_per_type: int = 0) -> list[dict[str, Any]]:
    """Problems of the imported JSON, the first ``max_per_type`` of each type (0: all), checked."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise StimulusError(path, [f"not JSON ({err}); import the published .npz with the import_digit_mat job"])
    if not isinstance(data, dict) or not isinstance(data.get("problems"), dict):
        raise StimulusError(path, ["expected {'problems': {type: {prob, answer_choices, correct_ind, "
                                   "perm_invariant}}} as written by import_digit_mat"])
    items, problems = [], []
    for ptype, block in data["problems"].items():
        missing = [k for k in ("prob", "answer_choices", "correct_ind", "perm_invariant") if k not in block]
        if missing:
            problems.append(f"type {ptype}: missing {', '.join(missing)}")
            continue
        n = len(block["prob"])
        if len(block["answer_choices"]) != n or len(block["correct_ind"]) != n:
            problems.append(f"type {ptype}: {n} problems but {len(block['answer_choices'])} answer lists and "
                            f"{len(block['correct_ind'])} correct indices")
            continue
        limit = n if max_per_type <= 0 else min(n, max_per_type)
        for i in range(limit):
            grid, choices, correct = block["prob"][i], block["answer_choices"][i], block["correct_ind"][i]
            if len(grid) != 3 or any(len(row) != 3 for row in grid):
                problems.append(f"type {ptype}, problem {i}: the grid is not 3×3")
                continue
            if not choices or not 0 <= int(correct) < len(choices):
                problems.append(f"type {ptype}, problem {i}: correct_ind {correct} outside its "
                                f"{len(choices)} answer choices")
                continue
            items.append({"item_id": f"{ptype}_{i}", "problem_type": ptype, "problem_ind": i, "prob": grid,
                          "answer_choices": choices, "correct_ind": int(correct),
                          "perm_invariant": bool(block["perm_invariant"])})
    if problems:
        raise StimulusError(path, problems)
    if not items:
        raise StimulusError(path, ["no problems"])
    return items


def import_digit_mat_npz(npz_path: Path, json_path: Path) -> dict[str, int]:
    """Convert the published ``all_problems.npz`` (a pickled dict of dicts) to our JSON, once.

    The only place in latentrun that unpickles: the user names the file
    (``--set npz_path=...``). Returns problems per type.
    """
    import numpy as np

    from runner.atomic import write_json

    with np.load(npz_path, allow_pickle=True) as archive:
        if "all_problems" not in archive.files:
            raise StimulusError(npz_path, [f"no 'all_problems' array; it holds {', '.join(archive.files)}"])
        raw = archive["all_problems"]
        problems = raw.item() if getattr(raw, "shape", None) == () else raw
    if not isinstance(problems, dict):
        raise StimulusError(npz_path, ["'all_problems' is not a dict of problem types"])
    out: dict[str, Any] = {}
    for ptype, block in problems.items():
        try:
            out[str(ptype)] = {
                "prob": np.asarray(block["prob"]).astype(int).tolist(),
                "answer_choices": np.asarray(block["answer_choices"]).astype(int).tolist(),
                "correct_ind": np.asarray(block["correct_ind"]).astype(int).reshape(-1).tolist(),
                "perm_invariant": bool(block["perm_invariant"]),
            }
        except (KeyError, TypeError, ValueError) as err:
            raise StimulusError(npz_path, [f"type {ptype}: cannot read {err}"]) from None
    digest = hashlib.sha256(Path(npz_path).read_bytes()).hexdigest()
    write_json(json_path, {"source": Path(npz_path).name, "sha256": digest, "problems": out})
    load_digit_mat(json_path)  # the converted file passes the same checks as any other
    return {k: len(v["prob"]) for k, v in out.items()}
