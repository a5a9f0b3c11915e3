"""Experiment settings from a YAML config or plain params, checked at plan time (no torch).

The seed's ``run_experiment.py`` takes either ``-c configs/<task>/<model>.yaml``
or ``--model/--task/--condition/--revision``; here both are job params
(``--set config=PATH`` or ``--set model=... --set task=...``) and resolve to
the same :class:`Settings`, so they produce the same files. A plain param
that differs from its default *and* from the config is an error rather
than a silent override.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from plugins.run_experiment.stimuli import CRT_CONDITIONS, DEFAULT_FILES, TASKS

#: YAML keys a config may set (the seed's, plus our knobs), and their types
CONFIG_KEYS: dict[str, type] = {
    "model": str, "task": str, "condition": str, "revision": str, "accelerate": bool, "stimuli": str,
    "max_new_tokens": int, "dtype": str, "batch_size": int, "max_per_type": int, "limit": int,
}
#: keys of the seed's configs that do not apply here (no token file, outputs go to the workspace)
IGNORED_KEYS = ("hf_token_path", "cache_dir", "output", "tokenizer", "instruct")
#: generation length when max_new_tokens is 0 (the seed: 10 for digit matrices, 100 otherwise)
DEFAULT_NEW_TOKENS = {"digit_mat": 10, "crt": 100}
FINAL_REVISIONS = ("", "main")


class ConfigError(ValueError):
    """A config or param combination that cannot run; the message says which key and why."""


@dataclass(frozen=True)
class Settings:
    """Everything that decides one result set (model × task × condition × revision)."""

    model: str
    task: str
    condition: str
    revision: str
    stimuli: str
    accelerate: bool
    max_new_tokens: int
    dtype: str
    batch_size: int
    max_per_type: int
    limit: int

    @property
    def model_slug(self) -> str:
        """File-name form of the model: ``owner/name`` → ``owner--name`` (never two models in one file)."""
        return self.model.strip("/").replace("/", "--")

    def as_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CONFIG_KEYS}


def read_config(path: str | Path) -> dict[str, Any]:
    """The YAML file as a dict of known keys; unknown keys and wrong types are one error."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist (paths are relative to the directory you run from)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected key: value lines, got {type(data).__name__}")
    problems = []
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in IGNORED_KEYS:
            continue
        if key not in CONFIG_KEYS:
            problems.append(f"unknown key {key!r} (known: {', '.join(CONFIG_KEYS)})")
            continue
        kind = CONFIG_KEYS[key]
        if value is None:
            value = kind()
        if kind is str and not isinstance(value, str):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{key}: expected {kind.__name__}, got {value!r}")
            continue
        out[key] = value
    if problems:
        raise ConfigError(f"config {path}:\n  - " + "\n  - ".join(problems))
    return out


def resolve(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> Settings:
    """Merge ``params`` (the job's resolved params) with the config they name; check the result."""
    merged = {k: params.get(k, defaults.get(k)) for k in CONFIG_KEYS}
    if params.get("config"):
        config = read_config(params["config"])
        conflicts = [f"{k}={merged[k]!r} but the config says {v!r}" for k, v in config.items()
                     if merged[k] != defaults.get(k) and merged[k] != v]
        if conflicts:
            raise ConfigError(f"config {params['config']}: " + "; ".join(conflicts)
                              + " (drop the --set or edit the config)")
        merged.update(config)
    return check(merged)


def check(values: Mapping[str, Any]) -> Settings:
    """Every problem with a set of values at once, before anything loads."""
    v = dict(values)
    problems = []
    if not v.get("model"):
        problems.append("no model: --set model=NAME (a folder under W/transformers) or --set config=PATH.yaml")
    task = v.get("task", "")
    if task not in TASKS:
        problems.append(f"task={task!r}: choose one of {', '.join(TASKS)}")
    condition = v.get("condition") or ""
    if task == "crt" and condition not in CRT_CONDITIONS:
        problems.append(f"task crt needs condition one of {', '.join(CRT_CONDITIONS)}, got {condition!r}")
    if task in TASKS and task != "crt" and condition:
        problems.append(f"task {task} has no conditions (its methods all run in one pass); drop condition={condition!r}")
    for key in ("batch_size",):
        if int(v.get(key) or 0) < 1:
            problems.append(f"{key} must be >= 1")
    for key in ("max_new_tokens", "max_per_type", "limit"):
        if int(v.get(key) or 0) < 0:
            problems.append(f"{key} must be >= 0 (0: the default / everything)")
    if v.get("dtype") not in ("float32", "bfloat16", "float16", "auto"):
        problems.append(f"dtype={v.get('dtype')!r}: choose float32, bfloat16, float16 or auto")
    revision = str(v.get("revision") or "")
    if "/" in revision or revision.startswith("."):
        problems.append(f"revision={revision!r} must be a checkpoint name (a folder under revisions/), not a path")
    if problems:
        raise ConfigError("; ".join(problems))
    return Settings(
        model=str(v["model"]), task=task, condition=condition,
        revision="" if revision in FINAL_REVISIONS else revision,
        stimuli=str(v.get("stimuli") or DEFAULT_FILES[task]), accelerate=bool(v.get("accelerate")),
        max_new_tokens=int(v.get("max_new_tokens") or DEFAULT_NEW_TOKENS.get(task, 100)),
        dtype=str(v.get("dtype")), batch_size=int(v["batch_size"]), max_per_type=int(v.get("max_per_type") or 0),
        limit=int(v.get("limit") or 0),
    )


def config_text(model: str, task: str, condition: str = "", accelerate: bool = False,
                extra: Mapping[str, Any] | None = None) -> str:
    """One config file as the seed's make_configs.py writes it (task, model, condition, accelerate, …)."""
    import yaml

    data: dict[str, Any] = {"task": task, "model": model}
    if condition:
        data["condition"] = condition
    if accelerate:
        data["accelerate"] = True
    if task in DEFAULT_NEW_TOKENS:
        data["max_new_tokens"] = DEFAULT_NEW_TOKENS[task]
    data.update(extra or {})
    return yaml.safe_dump(data, sort_keys=False)


def config_files(models: Sequence[str], tasks: Sequence[str], accelerate_models: Sequence[str] = ()) -> dict[str, str]:
    """``{relative path: YAML}`` for a grid: ``<task>/<model>.yaml``, ``crt/<condition>/<model>.yaml``."""
    files = {}
    for task in tasks:
        if task not in TASKS:
            raise ConfigError(f"task={task!r}: choose from {', '.join(TASKS)}")
        for model in models:
            slug = model.rstrip("/").rsplit("/", 1)[-1]
            accelerate = model in accelerate_models or slug in accelerate_models
            for condition in (CRT_CONDITIONS if task == "crt" else ("",)):
                rel = "/".join(p for p in (task, condition, f"{slug}.yaml") if p)
                if rel in files:
                    raise ConfigError(f"two models would share the config file {rel}: rename one")
                files[rel] = config_text(model, task, condition, accelerate)
    return files
