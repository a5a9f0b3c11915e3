"""Tasks as declarative data: (input, output) pairs, generated or read from the workspace.

Nothing here imports torch, so the entry point and the training script can use it.

* **Algorithmic** tasks are generated (they need no data): ``next_letter``,
  ``prev_letter``, ``list_first``, ``list_last``, ``to_upper``, ``to_lower`` (the
  paper's six) and a few extra letter tasks the example model was trained on.
* **Translation, linguistic, knowledge** tasks are read as published: one flat
  JSON object ``{input: output}`` per task at
  ``W/datasets/task_vectors/<family>/<task>.json`` (the layout of the paper's
  ``data/`` folder). A task whose file is missing is an error naming the path.

A *dataset* (the paper's word) is one evaluation item: ``num_demos``
demonstrations, one query and ``num_dummy_queries`` dummy queries (inputs that
are neither the query nor a demonstration) used to extract the task vector.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

LETTERS = string.ascii_lowercase
DATA_DIR = "datasets/task_vectors"
DEFAULT_FORMAT = "example:{x}->{y}"
DEFAULT_SEPARATOR = "\n"


# --------------------------------------------------------------------------- generators

def _shift(offset: int) -> list[tuple[str, str]]:
    return [(c, LETTERS[i + offset]) for i, c in enumerate(LETTERS) if 0 <= i + offset < len(LETTERS)]


def _lists(pick: Callable[[list[str]], str], seed: int, size: int = 600) -> list[tuple[str, str]]:
    """Comma-joined lists of 2-4 distinct lowercase letters; every list task shares one pool (same inputs)."""
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    while len(seen) < size:
        items = rng.sample(LETTERS, rng.randint(2, 4))
        seen.setdefault(",".join(items), pick(items))
    return list(seen.items())


GENERATORS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "next_letter": lambda: _shift(1),
    "prev_letter": lambda: _shift(-1),
    "to_upper": lambda: [(c, c.upper()) for c in LETTERS],
    "to_lower": lambda: [(c.upper(), c) for c in LETTERS],
    "list_first": lambda: _lists(lambda items: items[0], seed=1001),
    "list_last": lambda: _lists(lambda items: items[-1], seed=1001),
    # extra letter tasks (not in the paper) the example model was also trained on
    "copy_letter": lambda: [(c, c) for c in LETTERS],
    "next2_letter": lambda: _shift(2),
    "prev2_letter": lambda: _shift(-2),
    "mirror_letter": lambda: [(c, LETTERS[len(LETTERS) - 1 - i]) for i, c in enumerate(LETTERS)],
}


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's pairs come from and how its answers are compared."""

    name: str
    family: str
    generated: bool = False
    allow_prefix: bool = False  # knowledge tasks: the first token may be a prefix of the answer

    @property
    def path(self) -> str:
        """Workspace-relative JSON file of a task that is not generated."""
        return f"{DATA_DIR}/{self.family}/{self.name}.json"


def _specs() -> dict[str, TaskSpec]:
    specs: dict[str, TaskSpec] = {}
    for name in GENERATORS:
        specs[name] = TaskSpec(name, "algorithmic", generated=True)
    for name in ("fr_en", "es_en", "en_fr", "en_es"):
        specs[name] = TaskSpec(name, "translation")
    for name in ("present_simple_gerund", "present_simple_past_simple", "plural_singular", "antonyms"):
        specs[name] = TaskSpec(name, "linguistic")
    for name in ("country_capital", "person_language", "location_continent", "location_religion"):
        specs[name] = TaskSpec(name, "knowledge", allow_prefix=True)
    return specs


TASKS = _specs()
ALGORITHMIC = ["next_letter", "prev_letter", "list_first", "list_last", "to_upper", "to_lower"]
EXTRA_LETTER_TASKS = ["copy_letter", "next2_letter", "prev2_letter", "mirror_letter"]
#: the 18 tasks of the paper's main table, in its order
PAPER_TASKS = ALGORITHMIC + ["fr_en", "es_en", "en_fr", "en_es",
                             "present_simple_gerund", "present_simple_past_simple", "plural_singular", "antonyms",
                             "country_capital", "person_language", "location_continent", "location_religion"]
#: the paper's conflicting-task pairs (task A's demonstrations, task B's vector) that are algorithmic
CONFLICT_PAIRS = [("next_letter", "to_upper"), ("list_last", "list_first"), ("prev_letter", "next_letter")]
PAPER_CONFLICT_PAIRS = CONFLICT_PAIRS + [("present_simple_past_simple", "present_simple_gerund"), ("en_es", "en_fr")]


class TaskError(ValueError):
    """A task that is unknown, missing from the workspace, or too small; the message says which."""


def spec_of(name: str) -> TaskSpec:
    """The spec of a known task, or of ``family/name`` read from the workspace."""
    if name in TASKS:
        return TASKS[name]
    if "/" in name:  # a user's own task: datasets/task_vectors/<family>/<name>.json
        family, _, short = name.partition("/")
        return TaskSpec(short, family, allow_prefix=family == "knowledge")
    known = ", ".join(TASKS)
    raise TaskError(f"unknown task {name!r}; known tasks: {known} "
                    f"(or give family/name for {DATA_DIR}/<family>/<name>.json)")


def task_file_paths(names: Iterable[str]) -> list[str]:
    """Workspace-relative files the given tasks read (generated tasks read none)."""
    return [spec_of(n).path for n in names if not spec_of(n).generated]


@dataclass
class Task:
    name: str
    family: str
    pairs: list[tuple[str, str]]
    allow_prefix: bool = False
    source: str = "generated"
    dropped: list[str] = field(default_factory=list)  # inputs filtered out (multi-token outputs)

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self.pairs)


def load_pairs(path: Path) -> list[tuple[str, str]]:
    """Read a published ``{input: output}`` JSON file; a clear error for anything else."""
    if not path.exists():
        raise TaskError(f"task file {path} is missing: put the published {{input: output}} JSON file there")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TaskError(f"task file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise TaskError(f"task file {path} must be one JSON object mapping input strings to output strings")
    return [(k, v) for k, v in data.items() if k.strip() and v.strip()]


def load_task(name: str, workspace_root: Path | None) -> Task:
    """Generate an algorithmic task or read one from ``W/datasets/task_vectors/``."""
    spec = spec_of(name)
    if spec.generated:
        return Task(spec.name, spec.family, GENERATORS[spec.name](), spec.allow_prefix)
    if workspace_root is None:
        raise TaskError(f"task {name!r} is read from {spec.path}, which needs a workspace")
    path = Path(workspace_root) / spec.path
    return Task(spec.name, spec.family, load_pairs(path), spec.allow_prefix, source=spec.path)


# --------------------------------------------------------------------------- prompts

def check_format(prompt_format: str) -> None:
    if "{x}" not in prompt_format or not prompt_format.endswith("{y}"):
        raise ValueError(f"prompt_format must contain {{x}} and end with {{y}}, got {prompt_format!r}")


def build_prompt(demos: Sequence[tuple[str, str]], query: str, prompt_format: str = DEFAULT_FORMAT,
                 separator: str = DEFAULT_SEPARATOR) -> str:
    """``example:{x}->{y}`` lines for the demos, then the query line without its answer."""
    lines = [prompt_format.format(x=x, y=y) for x, y in demos]
    lines.append(prompt_format.format(x=query, y=""))
    return separator.join(lines)


# --------------------------------------------------------------------------- datasets

def needed_inputs(num_demos: int, num_dummy_queries: int) -> int:
    """Distinct inputs a dataset needs: demos + query + dummy queries (kept apart)."""
    return num_demos + 1 + num_dummy_queries


def check_size(task: Task, num_demos: int, num_dummy_queries: int) -> None:
    need = needed_inputs(num_demos, num_dummy_queries)
    if len(task.pairs) < need:
        raise TaskError(
            f"task {task.name!r} has {len(task.pairs)} usable examples, fewer than the {need} one dataset needs "
            f"({num_demos} demos + 1 query + {num_dummy_queries} dummy queries)"
            + (f"; {len(task.dropped)} were dropped because their output is not one token" if task.dropped else "")
        )


def sample_datasets(task: Task, n: int, num_demos: int, num_dummy_queries: int, seed: int,
                    queries: Sequence[str] | None = None) -> list[dict]:
    """``n`` datasets: ``{"demos": [[x, y], ...], "query": [x, y], "dummies": [[x, y], ...]}``.

    The query is drawn first, then demos and dummy queries from the other
    inputs, all distinct (the paper lets a dummy query equal a demo input; we
    keep them apart). ``queries`` fixes the query inputs (the conflicting-task
    experiment). Deterministic in ``seed``.
    """
    check_size(task, num_demos, num_dummy_queries)
    rng = random.Random(seed)
    mapping = task.mapping
    inputs = list(mapping)
    out = []
    for i in range(n):
        x = queries[i] if queries is not None else rng.choice(inputs)
        rest = [v for v in inputs if v != x]
        picked = rng.sample(rest, num_demos + num_dummy_queries)
        out.append({
            "demos": [[d, mapping[d]] for d in picked[:num_demos]],
            "query": [x, mapping[x]],
            "dummies": [[d, mapping[d]] for d in picked[num_demos:]],
        })
    return out


def is_correct(prediction: str, target: str, allow_prefix: bool = False) -> bool:
    """Exact match after strip; with ``allow_prefix`` one may be a prefix of the other (both non-empty)."""
    p = prediction.split("\n")[0].strip()
    t = target.strip()
    if allow_prefix:
        return bool(p) and bool(t) and (p.startswith(t) or t.startswith(p))
    return p == t


def filter_single_token(task: Task, tokenizer, prompt_format: str = DEFAULT_FORMAT) -> Task:
    """Keep pairs whose output is exactly one token after the query prompt (as published).

    The query prompt ``example:{x}->`` is tokenized alone and with the output
    appended; a pair is kept when the second is the first plus one token.
    """
    kept, dropped = [], []
    for x, y in task.pairs:
        prompt = prompt_format.format(x=x, y="")
        a = list(tokenizer(prompt)["input_ids"])
        b = list(tokenizer(prompt + y)["input_ids"])
        (kept if len(b) == len(a) + 1 and b[: len(a)] == a else dropped).append((x, y))
    return Task(task.name, task.family, kept, task.allow_prefix, task.source, [x for x, _ in dropped])
