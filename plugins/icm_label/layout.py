"""Where the icm_label jobs write, as a function of the params that make each file (no torch).

``experiments/icm_label/<model>/<testbed>/`` holds

* ``zero_shot-<backend>-<hash>.jsonl`` — zero-shot labels (no demonstrations; depends on data,
  model and backend only, so every search on the same data shares it);
* ``<backend>-seed<seed>-<hash>/`` — one search: ``labels.jsonl``, ``trajectory.csv``,
  ``trajectory.json``, ``search.json``, ``trajectory.png``, ``summary.json``/``.csv`` and,
  with an ``eval_file``, ``downstream-<hash>.json``/``.csv``/``.png``.

``<hash>`` is a hash of exactly the params the file depends on, so runs with
other params never overwrite each other.
"""

from __future__ import annotations

from typing import Any

from runner.plan import stable_hash

DATA_KEYS = ["train_file", "testbed", "consistency_key", "model", "backend"]
BACKEND_KEYS = {"local": ["dtype"], "openai": ["api_model", "logprobs"],
                "planted": ["planted_strength", "planted_noise", "planted_context"]}
SEARCH_KEYS = ["seed", "alpha", "batch_size", "num_seed", "K", "consistency_fix_K", "decay", "initial_T", "final_T",
               "scheduler", "mp_reduction", "group_weight", "max_batches"]
EVAL_KEYS = ["eval_file", "num_shots"]


def data_uses(params: dict[str, Any]) -> list[str]:
    keys = DATA_KEYS + BACKEND_KEYS.get(params["backend"], [])
    if params["backend"] == "planted":
        keys.append("seed")  # the planted noise is seeded
    return keys


def search_uses(params: dict[str, Any]) -> list[str]:
    return data_uses(params) + [k for k in SEARCH_KEYS if k not in data_uses(params)]


def _slug(model: str) -> str:
    return model.strip("/").replace("/", "--")


def folder(params: dict[str, Any]) -> str:
    return f"experiments/icm_label/{_slug(params['model'])}/{params['testbed']}"


def zero_shot_file(params: dict[str, Any]) -> str:
    digest = stable_hash({k: params.get(k) for k in data_uses(params)}, 8)
    return f"{folder(params)}/zero_shot-{params['backend']}-{digest}.jsonl"


def search_dir(params: dict[str, Any]) -> str:
    digest = stable_hash({k: params.get(k) for k in search_uses(params)}, 8)
    return f"{folder(params)}/{params['backend']}-seed{params['seed']}-{digest}"


def search_files(params: dict[str, Any]) -> dict[str, str]:
    base = search_dir(params)
    return {"labels": f"{base}/labels.jsonl", "trajectory_csv": f"{base}/trajectory.csv",
            "trajectory_json": f"{base}/trajectory.json", "search": f"{base}/search.json"}


def report_files(params: dict[str, Any]) -> dict[str, str]:
    base = search_dir(params)
    return {"summary_json": f"{base}/summary.json", "summary_csv": f"{base}/summary.csv",
            "plot": f"{base}/trajectory.png"}


def downstream_files(params: dict[str, Any]) -> dict[str, str]:
    digest = stable_hash({k: params.get(k) for k in EVAL_KEYS}, 8)
    base = f"{search_dir(params)}/downstream-{digest}"
    return {"json": f"{base}.json", "csv": f"{base}.csv", "plot": f"{base}.png"}
