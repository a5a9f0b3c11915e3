"""Prompts of the five tasks and the answer extraction of their production conditions (no torch).

The texts follow Hu & Frank (2024) so numbers are comparable with the
paper; the training script of the example models uses the same functions,
so the tiny models see exactly these formats.
"""

from __future__ import annotations

import re
from typing import Sequence

#: metalinguistic LAMBADA prompt; the continuation scored after it is " " + final word
LAMBADA_META = "What word is most likely to come next in the following text?\nText: {prefix}\nPrediction:"
#: metalinguistic grammaticality prompt (BLiMP, DGL); the continuations scored are " 1" and " 2"
GRAMMAR_META = ("Which of the following two sentences is more grammatically correct in English? "
                "Respond with 1 or 2 as your answer.\nSentence 1: {s1}\nSentence 2: {s2}\nAnswer:")
GRAMMAR_OPTIONS = (" 1", " 2")
#: CRT question prompt; generation continues it, forced-choice options follow it after one space
CRT_PROMPT = "Question: {question}\nAnswer:"


# --------------------------------------------------------------------------- digit matrices


def render_cell(cell: Sequence[int]) -> str:
    """``[3 5]``; a -1 digit is an empty slot, shown as a blank."""
    return "[" + " ".join(" " if int(d) == -1 else str(int(d)) for d in cell) + "]"


def render_matrix(problem: Sequence[Sequence[Sequence[int]]]) -> str:
    """The 3×3 grid, rows on lines, the last cell left open as ``[`` for the model to complete."""
    lines = []
    for r, row in enumerate(problem):
        cells = [render_cell(cell) for cell in row]
        if r == len(problem) - 1:
            cells[-1] = "["
        lines.append(" ".join(cells))
    return "\n".join(lines)


def render_choice(cell: Sequence[int]) -> str:
    """A forced-choice option: the cell without its opening bracket (``3 5]``), continuing ``[``."""
    return render_cell(cell)[1:]


def parse_cell(generated: str) -> list[int] | None:
    """Digits up to the first ``]`` (spaces skipped); any other character or no ``]`` → None."""
    digits: list[int] = []
    for char in generated:
        if char == "]":
            return digits
        if char.isdigit():
            digits.append(int(char))
        elif char != " ":
            return None
    return None


def cell_matches(predicted: Sequence[int] | None, answer: Sequence[int], perm_invariant: bool) -> bool:
    """Exact match of the digits; order-free for permutation-invariant problem types."""
    if predicted is None:
        return False
    target = [int(d) for d in answer if int(d) != -1]
    if perm_invariant:
        return sorted(predicted) == sorted(target)
    return list(predicted) == target


# --------------------------------------------------------------------------- CRT

_NUMBER = re.compile(r"\$?\s?(\d+(?:,\d{3})*(?:\.\d+)?)")


def first_number(text: str) -> float | None:
    """The first number in ``text`` (``$1,200.50`` → 1200.5), or None."""
    match = _NUMBER.search(text)
    return float(match.group(1).replace(",", "")) if match else None


def clean_response(generated: str) -> str:
    """The first line of a generated answer, cut at the end of its first sentence (decimals kept)."""
    line = generated.strip().split("\n", 1)[0]
    match = re.search(r"\.(\s|$)", line)
    return (line[: match.start()] if match else line).strip()


def label_response(response: str, options: dict[str, str]) -> str:
    """Which option a cleaned response names, by its first number: an option label or ``other``.

    ``options`` maps labels (``correct``, ``intuitive``, …) to option texts;
    the first label whose number equals the response's wins, so list
    ``correct`` first.
    """
    value = first_number(response)
    if value is None:
        return "other"
    for label, text in options.items():
        target = first_number(text)
        if target is not None and abs(target - value) < 1e-9:
            return label
    return "other"


def money_canonical(text: str) -> str:
    """``$20.0`` → ``$20``; ``$0.5`` → ``$0.50``: the option written the usual way."""
    value = first_number(text)
    if value is None:
        return text
    return f"${value:.0f}" if value == int(value) else f"${value:.2f}"
