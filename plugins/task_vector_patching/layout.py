"""Where every artifact goes, derived from the params that make it (no torch).

``experiments/task_vectors/<model>/<setting>/`` with ``setting`` =
``k<num_demos>-dq<num_dummy_queries>-dev<dev_size>-test<test_size>-seed<seed>``
(plus ``-fmt<hash>`` for a non-default prompt format):

* ``<task>/datasets.json`` — the sampled dev/test datasets and filtering counts
* ``<task>/icl.json`` — baseline (query only) and ICL predictions on the test datasets
* ``<task>/task_vectors.safetensors`` (+ ``.json`` sidecar) — θ for every dev/test dataset and layer
* ``<mode>/<task>.json`` — layer sweep on dev, test accuracy at the chosen layer
  (``mode`` = ``replace`` or ``add-x<scale>``)
* ``<mode>/results_<task_set>.{csv,json,png}`` — the table and accuracy-vs-layer plot
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from plugins.task_vector_patching.tasks import (
    ALGORITHMIC, DEFAULT_FORMAT, DEFAULT_SEPARATOR, PAPER_TASKS, spec_of,
)

ROOT = "experiments/task_vectors"


def _short_hash(value: Any, n: int = 8) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:n]


def setting(params: Mapping[str, Any], num_dev: str = "dev_size", num_test: str = "test_size") -> str:
    text = (f"k{params['num_demos']}-dq{params['num_dummy_queries']}-dev{params[num_dev]}"
            f"-test{params[num_test]}-seed{params['seed']}")
    fmt, sep = params.get("prompt_format", DEFAULT_FORMAT), params.get("separator", DEFAULT_SEPARATOR)
    if (fmt, sep) != (DEFAULT_FORMAT, DEFAULT_SEPARATOR):
        text += f"-fmt{_short_hash([fmt, sep], 6)}"
    if params.get("dtype", "float32") != "float32":
        text += f"-{params['dtype']}"
    return text


def mode_key(params: Mapping[str, Any]) -> str:
    return "replace" if params["patch_mode"] == "replace" else f"add-x{float(params['scale']):g}"


def task_set(tasks: Sequence[str]) -> str:
    """A short, stable name for a task list (used in file names)."""
    tasks = list(tasks)
    if tasks == ALGORITHMIC:
        return "algorithmic"
    if tasks == PAPER_TASKS:
        return "paper18"
    if len(tasks) == 1:
        return task_dir(tasks[0]).replace("/", "__")
    return f"custom-{_short_hash(tasks)}"


def task_dir(name: str) -> str:
    spec = spec_of(name)
    return spec.name if spec.generated or "/" not in name else f"{spec.family}/{spec.name}"


def base(params: Mapping[str, Any]) -> str:
    return f"{ROOT}/{params['model']}/{setting(params)}"


def task_files(params: Mapping[str, Any], task: str) -> dict[str, str]:
    b = f"{base(params)}/{task_dir(task)}"
    return {"datasets": f"{b}/datasets.json", "icl": f"{b}/icl.json", "vectors": f"{b}/task_vectors.safetensors"}


def sweep_file(params: Mapping[str, Any], task: str) -> str:
    return f"{base(params)}/{mode_key(params)}/{task_dir(task)}.json"


def report_files(params: Mapping[str, Any]) -> dict[str, str]:
    stem = f"{base(params)}/{mode_key(params)}/results_{task_set(params['tasks'])}"
    return {"csv": f"{stem}.csv", "json": f"{stem}.json", "png": f"{stem}_by_layer.png"}


def conflicting_files(params: Mapping[str, Any]) -> dict[str, str]:
    pairs = "-".join(p.replace(":", "_to_") for p in params["pairs"])
    name = "algorithmic" if list(params["pairs"]) == DEFAULT_PAIRS else f"custom-{_short_hash(pairs)}"
    stem = f"{ROOT}/{params['model']}/conflicting/{setting(params)}/{mode_key(params)}/{name}"
    return {"csv": f"{stem}.csv", "json": f"{stem}.json", "png": f"{stem}.png"}


def robustness_files(params: Mapping[str, Any]) -> dict[str, str]:
    stem = (f"{ROOT}/{params['model']}/robustness/k{params['num_demos']}-dq{params['num_dummy_queries']}"
            f"-sets{params['num_sets']}-seed{params['seed']}/{task_set(params['tasks'])}")
    return {"vectors": f"{stem}/task_vectors.safetensors", "json": f"{stem}/layer-{params['layer']}.json",
            "projection": f"{stem}/layer-{params['layer']}_projection.png",
            "distances": f"{stem}/layer-{params['layer']}_distances.png"}


def paper_files(params: Mapping[str, Any]) -> dict[str, str]:
    stem = f"{ROOT}/paper/{mode_key(params)}/{_short_hash(sorted(params['models']), 8)}"
    return {"csv": f"{stem}/comparison.csv", "json": f"{stem}/comparison.json"}


DEFAULT_PAIRS = ["next_letter:to_upper", "list_last:list_first", "prev_letter:next_letter"]
