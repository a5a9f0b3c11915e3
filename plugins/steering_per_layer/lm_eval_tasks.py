"""Local lm-evaluation-harness task configs that read the workspace instead of the hub.

lm-eval's built-in ``mmlu``, ``mmlu_pro`` and ``piqa`` load their data from
the Hugging Face hub. :func:`write_local_tasks` writes, into a folder of the
run, task YAMLs that *include* lm-eval's own built-in YAMLs (so prompts,
few-shot settings, filters and metrics are lm-eval's, version for version)
and override only where the data comes from: parquet (or JSON lines) files
under ``W/datasets/<owner>/<name>`` in the layout a hub download gives
(``huggingface-cli download <owner>/<name> --repo-type dataset --local-dir
W/datasets/<owner>/<name>``). The folder is then loaded with
``TaskManager(include_path=..., include_defaults=False)``.

=====================  ============================  ===========================================
task (group)           data folder (default)         files
=====================  ============================  ===========================================
``mmlu``               ``cais/mmlu``                 ``<subject>/{test,dev,validation}-*.parquet``
``mmlu_pro``           ``TIGER-Lab/MMLU-Pro``        ``data/{test,validation}-*.parquet``
``mmlu_pro_loglik``    ``TIGER-Lab/MMLU-Pro``        (same files)
``piqa``               ``ybisk/piqa``                ``**/{train,validation}-*.parquet``
=====================  ============================  ===========================================

Groups cover the subjects / categories present, so a partial download works
(its scores are then over those subjects only). Sub-task names are
lm-eval's (``mmlu_anatomy``, ``mmlu_stem``, ``mmlu_pro_math``).
``mmlu_pro_loglik`` is ours: MMLU-Pro as a log-likelihood multiple-choice task
(``Q: {question}\\n\\nA: The answer is`` followed by each option's text; acc,
acc_norm), parse-free and orders of magnitude cheaper than ``mmlu_pro``'s
chain-of-thought generation (up to 2,048 new tokens per question) — what the
example workspace and CI run. Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

DATASET_DIRS = {"mmlu": "cais/mmlu", "mmlu_pro": "TIGER-Lab/MMLU-Pro", "piqa": "ybisk/piqa"}
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
LOGLIK = "mmlu_pro_loglik"
LOGLIK_PROMPT = "Q: {{question}}\n\nA: The answer is"


class LocalTaskError(ValueError):
    """Local data for a task is missing or not in the published layout."""


def family(task: str) -> str | None:
    """Which local family a task or group name belongs to (``mmlu_pro_math`` -> ``mmlu_pro``), or None."""
    if task == LOGLIK or task.startswith(LOGLIK + "_"):
        return "mmlu_pro"
    if task == "mmlu_pro" or task.startswith("mmlu_pro_"):
        return "mmlu_pro"
    if task == "mmlu" or task.startswith("mmlu_"):
        return "mmlu"
    if task == "piqa":
        return "piqa"
    return None


def dataset_dir(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """Workspace-relative data folder of a family, e.g. ``datasets/cais/mmlu``."""
    return "datasets/" + dict(DATASET_DIRS, **(overrides or {}))[name]


def required_dirs(tasks: Iterable[str], overrides: Mapping[str, str] | None = None) -> list[str]:
    """The data folders the requested tasks read (declared as the sub-job's reads)."""
    out: list[str] = []
    for task in tasks:
        name = family(task)
        if name is not None and dataset_dir(name, overrides) not in out:
            out.append(dataset_dir(name, overrides))
    return out


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


def split_files(folder: Path, split: str) -> list[str]:
    """Data files of one split: ``<split>-*.parquet`` / ``<split>.jsonl`` ... anywhere under ``folder``."""
    names = {split, "valid"} if split == "validation" else {split}
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in DATA_SUFFIXES or not path.is_file() or any(p.startswith(".") for p in path.parts):
            continue
        stem = path.name[: -len(path.suffix)]
        if stem in names or any(stem.startswith(n + "-") or stem.startswith(n + "_") for n in names):
            found.append(str(path.resolve()))
    kinds = {Path(f).suffix for f in found}
    if len(kinds) > 1:
        raise LocalTaskError(f"{folder}: split {split!r} mixes file kinds {sorted(kinds)}; keep one")
    return found


def _builder(files: list[str]) -> str:
    return "parquet" if files[0].endswith(".parquet") else "json"


def _data_keys(splits: Mapping[str, list[str]]) -> dict[str, Any]:
    present = {k: v for k, v in splits.items() if v}
    first = next(iter(present.values()))
    return {"dataset_path": _builder(first), "dataset_name": None,
            "dataset_kwargs": {"data_files": present}}


def _dump(path: Path, data: Mapping[str, Any]) -> None:
    """YAML lm-eval reads; JSON is YAML, which keeps quoting exact."""
    path.write_text(json.dumps(data, indent=1) + "\n")


def _mmlu(root: Path, out: Path) -> list[str]:
    from lm_eval.tasks.mmlu._generate_configs import SUBJECTS

    template = lm_eval_tasks_dir() / "mmlu" / "default" / "_default_template_yaml"
    categories: dict[str, list[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in ("all", "auxiliary_train"):
            continue
        splits = {s: split_files(folder, s) for s in ("test", "dev", "validation")}
        if not splits["test"]:
            continue
        subject = folder.name
        category = SUBJECTS.get(subject, "other")
        categories.setdefault(category, []).append(subject)
        _dump(out / f"mmlu_{subject}.yaml", {
            "include": str(template), "task": f"mmlu_{subject}", "task_alias": subject,
            "tag": f"mmlu_{category}_tasks",
            "description": f"The following are multiple choice questions (with answers) about "
                           f"{subject.replace('_', ' ')}.\n\n",
            **_data_keys(splits)})
    if not categories:
        raise LocalTaskError(f"{root}: no <subject>/test-*.parquet found (the layout of a cais/mmlu download)")
    for category in categories:
        _dump(out / f"_mmlu_{category}.yaml", {
            "group": f"mmlu_{category}", "group_alias": category, "task": [f"mmlu_{category}_tasks"],
            "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}], "metadata": {"version": 2}})
    _dump(out / "_mmlu.yaml", {
        "group": "mmlu", "task": [f"mmlu_{c}" for c in sorted(categories)],
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}], "metadata": {"version": 2}})
    return [f"mmlu_{s}" for subjects in categories.values() for s in subjects]


def _categories(files: list[str]) -> list[str]:
    from datasets import load_dataset

    data = load_dataset(_builder(files), data_files={"test": files}, split="test")
    if "category" not in data.column_names:
        raise LocalTaskError(f"{files[0]}: no 'category' column (not MMLU-Pro's schema)")
    return sorted(set(data["category"]))


def _mmlu_pro(root: Path, out: Path) -> list[str]:
    builtin = lm_eval_tasks_dir() / "mmlu_pro"
    splits = {s: split_files(root, s) for s in ("test", "validation")}
    if not splits["test"]:
        raise LocalTaskError(f"{root}: no test-*.parquet found (the layout of a TIGER-Lab/MMLU-Pro download: "
                             "data/test-00000-of-00001.parquet, data/validation-00000-of-00001.parquet)")
    known = {p.stem[len("mmlu_pro_"):]: p for p in builtin.glob("mmlu_pro_*.yaml")}
    present = []
    for category in _categories(splits["test"]):
        key = category.replace(" ", "_")
        if key not in known:
            raise LocalTaskError(f"{root}: category {category!r} is not one of MMLU-Pro's: "
                                 + ", ".join(sorted(k.replace('_', ' ') for k in known)))
        present.append(key)
    data = _data_keys(splits)
    for key in present:
        _dump(out / f"mmlu_pro_{key}.yaml", {"include": str(known[key]), **data})
        _dump(out / f"{LOGLIK}_{key}.yaml", {
            "include": str(known[key]), **data, "task": f"{LOGLIK}_{key}", "task_alias": key,
            "output_type": "multiple_choice", "description": "", "doc_to_text": LOGLIK_PROMPT,
            "doc_to_choice": "{{options}}", "doc_to_target": "answer_index", "num_fewshot": 0,
            "fewshot_config": {"sampler": "first_n"}, "filter_list": None, "generation_kwargs": None,
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]})
    _dump(out / "_mmlu_pro.yaml", {
        "group": "mmlu_pro", "task": [f"mmlu_pro_{k}" for k in present],
        "aggregate_metric_list": [{"aggregation": "mean", "metric": "exact_match", "weight_by_size": True,
                                   "filter_list": "custom-extract"}], "metadata": {"version": 2.0}})
    _dump(out / f"_{LOGLIK}.yaml", {
        "group": LOGLIK, "task": [f"{LOGLIK}_{k}" for k in present],
        "aggregate_metric_list": [{"metric": m, "aggregation": "mean", "weight_by_size": True}
                                  for m in ("acc", "acc_norm")], "metadata": {"version": 1.0}})
    return [f"mmlu_pro_{k}" for k in present]


def _piqa(root: Path, out: Path) -> list[str]:
    splits = {s: split_files(root, s) for s in ("train", "validation")}
    if not splits["validation"]:
        raise LocalTaskError(f"{root}: no validation-*.parquet (or valid*.jsonl) found; PIQA is scored on its "
                             "validation split (columns goal, sol1, sol2, label)")
    _dump(out / "piqa.yaml", {"include": str(lm_eval_tasks_dir() / "piqa" / "piqa.yaml"), **_data_keys(splits)})
    return ["piqa"]


WRITERS = {"mmlu": _mmlu, "mmlu_pro": _mmlu_pro, "piqa": _piqa}


def write_local_tasks(workspace_root: Path, out: Path, tasks: Iterable[str],
                      overrides: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Write the YAMLs of every local family the tasks need into ``out``; ``{family: task names}``."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for task in tasks:
        name = family(task)
        if name is None or name in written:
            continue
        root = Path(workspace_root) / dataset_dir(name, overrides)
        if not root.is_dir():
            raise LocalTaskError(f"{root} not found: task {task!r} reads {name} data from there "
                                 "(see docs/plugins/steering_per_layer.md, 'lm-eval')")
        sub = out / name
        sub.mkdir(exist_ok=True)
        written[name] = WRITERS[name](root, sub)
    return written
