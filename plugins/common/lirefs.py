"""The LiReFs MMLU-Pro data the seed uses, and its import into a workspace.

``W/datasets/lirefs/mmlu-pro-3000samples.json`` is a JSON list of MMLU-Pro
questions, each with a ``memory_reason_score`` computed by the Linear
Reasoning Features paper (arXiv 2503.23084). An entry is *reasoning* when
its score is above 0.5, else *memorizing* (the seed's rule).
``W/datasets/lirefs/mmlu-pro/`` is MMLU-Pro saved with
``datasets.save_to_disk``; its ``validation`` split gives few-shot examples.

The schema check reports every bad entry at once, one line each, as
``entry <index>: <field>: <problem>``. See docs/data.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

LIREFS_DIR = "datasets/lirefs"
LIREFS_FILE = "datasets/lirefs/mmlu-pro-3000samples.json"  # workspace-relative
FEW_SHOT_DIR = "datasets/lirefs/mmlu-pro"  # datasets.save_to_disk with a validation split
SURFACE_MATCHED_FILE = "datasets/lirefs/surface-matched.json"  # example workspace's control set

REASONING = "reasoning"
MEMORIZING = "memorizing"
THRESHOLD = 0.5
LETTERS = "ABCDEFGHIJ"
MAX_OPTIONS = len(LETTERS)

__all__ = [
    "FEW_SHOT_DIR",
    "LIREFS_DIR",
    "LIREFS_FILE",
    "MEMORIZING",
    "REASONING",
    "SURFACE_MATCHED_FILE",
    "FewShotItem",
    "LiReFsSchemaError",
    "MMLUProItem",
    "check_entries",
    "import_dataset_zip",
    "label_of",
    "load_few_shot",
    "load_lirefs",
]


class LiReFsSchemaError(ValueError):
    """The file does not follow the schema; ``problems`` lists every bad entry.

    The message has one line per problem: ``entry <index>: <field>: <problem>``.
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} schema problem(s):\n{lines}")


def label_of(memory_reason_score: float) -> str:
    """``"reasoning"`` if the score is above 0.5, else ``"memorizing"`` (the seed's rule)."""
    return REASONING if memory_reason_score > THRESHOLD else MEMORIZING


@dataclass(frozen=True)
class MMLUProItem:
    """One LiReFs MMLU-Pro question. ``index`` is its position in the file."""

    index: int
    question: str
    options: list[str]
    answer: str
    category: str
    memory_reason_score: float

    @property
    def label(self) -> str:
        """``"reasoning"`` if ``memory_reason_score > 0.5`` else ``"memorizing"``."""
        return label_of(self.memory_reason_score)

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)


@dataclass(frozen=True)
class FewShotItem:
    """A few-shot example from MMLU-Pro's validation split."""

    index: int
    question: str
    options: list[str]
    answer: str
    category: str
    cot_content: str = ""


# --------------------------------------------------------------------------- schema


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entry_problems(index: int, entry: Any, need_score: bool = True) -> list[str]:
    """Every problem of one entry, as ``entry <index>: <field>: <problem>``."""
    where = f"entry {index}"
    if not isinstance(entry, dict):
        return [f"{where}: <entry>: expected an object, got {type(entry).__name__}"]
    problems: list[str] = []
    fields = ["question", "options", "answer", "category"] + (["memory_reason_score"] if need_score else [])
    for name in fields:
        if name not in entry:
            problems.append(f"{where}: {name}: missing")
    question = entry.get("question")
    if "question" in entry and (not isinstance(question, str) or not question.strip()):
        problems.append(f"{where}: question: expected a non-empty string")
    options = entry.get("options")
    n_options = None
    if "options" in entry:
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            problems.append(f"{where}: options: expected a list of strings")
        elif not 1 <= len(options) <= MAX_OPTIONS:
            problems.append(f"{where}: options: expected 1 to {MAX_OPTIONS} options, got {len(options)}")
        else:
            n_options = len(options)
    answer = entry.get("answer")
    if "answer" in entry:
        if not isinstance(answer, str) or len(answer) != 1 or answer not in LETTERS:
            problems.append(f"{where}: answer: expected one letter A-J, got {answer!r}")
        elif n_options is not None and LETTERS.index(answer) >= n_options:
            problems.append(f"{where}: answer: {answer!r} but only {n_options} options")
    category = entry.get("category")
    if "category" in entry and (not isinstance(category, str) or not category.strip()):
        problems.append(f"{where}: category: expected a non-empty string")
    if need_score and "memory_reason_score" in entry:
        score = entry["memory_reason_score"]
        if not _is_number(score) or score != score:  # NaN fails the second test
            problems.append(f"{where}: memory_reason_score: expected a number, got {score!r}")
        elif not 0.0 <= float(score) <= 1.0:
            problems.append(f"{where}: memory_reason_score: expected a number in [0, 1], got {score!r}")
    if "answer_index" in entry and n_options is not None and isinstance(answer, str) and answer in LETTERS:
        given = entry["answer_index"]
        if not (isinstance(given, int) and not isinstance(given, bool)) or given != LETTERS.index(answer):
            problems.append(f"{where}: answer_index: {given!r} does not match answer {answer!r}")
    return problems


def check_entries(entries: Any, source: str = "data", need_score: bool = True) -> None:
    """Raise :class:`LiReFsSchemaError` listing every bad entry; return None when all are fine."""
    if not isinstance(entries, list):
        raise LiReFsSchemaError(source, [f"<file>: expected a JSON list of entries, got {type(entries).__name__}"])
    problems: list[str] = []
    for index, entry in enumerate(entries):
        problems.extend(_entry_problems(index, entry, need_score))
    if problems:
        raise LiReFsSchemaError(source, problems)


# --------------------------------------------------------------------------- loading


def load_lirefs(path: str | os.PathLike[str], sample_size: int | None = None, seed: int = 0) -> list[MMLUProItem]:
    """The entries of a LiReFs MMLU-Pro JSON file, schema-checked.

    ``sample_size`` keeps that many entries, drawn without replacement with
    ``random.Random(seed)`` and returned in file order (deterministic given
    the seed); None keeps all. Each item's ``index`` is its position in the
    file, so a sample can always be traced back.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: import the LiReFs dataset.zip with "
            "`python runner/main.py --jobs import_lirefs --set zip_path=... --workspace_path W`"
        ) from None
    except json.JSONDecodeError as err:
        raise LiReFsSchemaError(str(path), [f"<file>: not valid JSON: {err}"]) from None
    check_entries(entries, str(path))
    indices = list(range(len(entries)))
    if sample_size is not None:
        if sample_size < 0:
            raise ValueError(f"sample_size must be >= 0, got {sample_size}")
        if sample_size < len(entries):
            indices = sorted(random.Random(seed).sample(indices, sample_size))
    return [
        MMLUProItem(
            index=i,
            question=entries[i]["question"],
            options=list(entries[i]["options"]),
            answer=entries[i]["answer"],
            category=entries[i]["category"],
            memory_reason_score=float(entries[i]["memory_reason_score"]),
        )
        for i in indices
    ]


def load_few_shot(path: str | os.PathLike[str], split: str = "validation") -> dict[str, list[FewShotItem]]:
    """Few-shot examples per category from a saved MMLU-Pro (``datasets.load_from_disk``).

    Reads the ``validation`` split (fields ``category``, ``question``,
    ``options``, ``cot_content``, ``answer``); the examples of each category
    keep the split's order, as the seed uses them.
    """
    from datasets import load_from_disk  # heavy: imported only when called

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (a saved MMLU-Pro with a {split!r} split)")
    saved = load_from_disk(str(path))
    if split not in saved:
        raise KeyError(f"{path} has no {split!r} split (splits: {', '.join(saved.keys())})")
    rows = saved[split].to_list()
    check_entries(rows, f"{path}[{split}]", need_score=False)
    grouped: dict[str, list[FewShotItem]] = {}
    for index, row in enumerate(rows):
        grouped.setdefault(row["category"], []).append(
            FewShotItem(
                index=index,
                question=row["question"],
                options=list(row["options"]),
                answer=row["answer"],
                category=row["category"],
                cot_content=row.get("cot_content") or "",
            )
        )
    return grouped


# --------------------------------------------------------------------------- import


def _safe_member(name: str) -> PurePosixPath | None:
    """The member's relative path, or None if it would land outside the target."""
    normalized = name.replace("\\", "/")
    pure = PurePosixPath(normalized)
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return None
    if any(part == ".." for part in pure.parts):
        return None
    return pure


def import_dataset_zip(zip_path: str | os.PathLike[str], workspace_root: str | os.PathLike[str],
                       overwrite: bool = False) -> Path:
    """Extract the published LiReFs ``dataset.zip`` into ``W/datasets/lirefs/`` as it is.

    Every member is checked first: an absolute path, a ``..`` component or a
    symbolic link refuses the whole archive (nothing is written). Members go
    to a temporary folder beside the target, which is renamed into place
    only when everything was extracted. Paths are kept as they are, except
    that when the archive wraps everything in one top-level folder holding
    ``mmlu-pro-3000samples.json`` (e.g. ``dataset/``), that folder's contents
    become ``datasets/lirefs/`` (where the seed looks for them). An existing ``datasets/lirefs/`` is replaced only
    with ``overwrite``. Returns the target folder.
    """
    zip_path = Path(zip_path)
    target = Path(workspace_root) / LIREFS_DIR
    if not zip_path.is_file():
        raise FileNotFoundError(f"{zip_path}: no such file")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True (job: --set overwrite=true)")
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        bad = []
        for info in members:
            mode = info.external_attr >> 16
            if _safe_member(info.filename) is None:
                bad.append(f"{info.filename}: path leaves the target folder")
            elif stat.S_ISLNK(mode):
                bad.append(f"{info.filename}: symbolic links are not extracted")
        if bad:
            raise ValueError(f"{zip_path}: refusing to extract:\n" + "\n".join(f"  {b}" for b in bad))
        files = [m for m in members if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        if not files:
            raise ValueError(f"{zip_path}: the archive holds no files")
        paths = [_safe_member(m.filename) for m in files]
        tops = {p.parts[0] for p in paths}  # type: ignore[union-attr]
        data_name = PurePosixPath(LIREFS_FILE).name
        strip = len(tops) == 1 and any(p == PurePosixPath(next(iter(tops)), data_name) for p in paths)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".lirefs.import-", dir=target.parent))
        try:
            for info in files:
                parts = _safe_member(info.filename).parts  # type: ignore[union-attr]
                relative = Path(*parts[1:]) if strip else Path(*parts)
                out = tmp / relative
                if tmp.resolve() not in out.resolve().parents:
                    raise ValueError(f"{zip_path}: {info.filename}: path leaves the target folder")
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=".lirefs.old-", dir=target.parent))
                os.rename(target, old / "d")
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
