"""Where every artifact goes, derived from the params that make it (no torch, no numpy).

Under ``experiments/icl_strategies/<setting>/``:

* ``data/D<num_dims>-seed<seed>/tasks-N<N>.npz`` — the N training tasks;
  ``eval-tasks-<num_eval_tasks>.npz`` — fresh tasks from the true prior;
* ``<model>/<training>/N<N>/`` — one grid cell, with ``<model>`` =
  ``D<num_dims>-T<context_length>-mlp<factor>-seed<seed>`` and ``<training>`` =
  ``steps<max_steps>-lr<lr>-bs<batch_size>-warm<warmup_steps>-ck<num_checkpoints>``:
  ``checkpoints/checkpoint-<step>/`` (config.json + model.safetensors),
  ``training_log.json``, and ``eval-<num_eval_sequences>seq-<num_eval_tasks>tasks/``
  with ``behaviour.json`` and ``predictions.npz``;
* ``<model>/<training>/analysis-<eval>-N<n1-n2-…>-tf<train_fraction>/`` —
  ``fit.json``, ``cells.csv`` and the figures ``relative_distance.png``,
  ``posterior_odds.png``, ``transition_time.png``.
"""

from __future__ import annotations

from typing import Any, Mapping

ROOT = "experiments/icl_strategies"


def data_dir(p: Mapping[str, Any]) -> str:
    return f"{ROOT}/{p['setting']}/data/D{p['num_dims']}-seed{p['seed']}"


def tasks_file(p: Mapping[str, Any], n: int) -> str:
    return f"{data_dir(p)}/tasks-N{n}.npz"


def eval_tasks_file(p: Mapping[str, Any]) -> str:
    return f"{data_dir(p)}/eval-tasks-{p['num_eval_tasks']}.npz"


def training_dir(p: Mapping[str, Any]) -> str:
    model = f"D{p['num_dims']}-T{p['context_length']}-mlp{p['mlp_expansion_factor']:g}-seed{p['seed']}"
    training = (f"steps{p['max_steps']}-lr{p['lr']:g}-bs{p['batch_size']}-warm{p['warmup_steps']}"
                f"-ck{p['num_checkpoints']}")
    return f"{ROOT}/{p['setting']}/{model}/{training}"


def cell_dir(p: Mapping[str, Any], n: int) -> str:
    return f"{training_dir(p)}/N{n}"


def eval_name(p: Mapping[str, Any]) -> str:
    return f"eval-{p['num_eval_sequences']}seq-{p['num_eval_tasks']}tasks"


def eval_dir(p: Mapping[str, Any], n: int) -> str:
    return f"{cell_dir(p, n)}/{eval_name(p)}"


def analysis_dir(p: Mapping[str, Any]) -> str:
    grid = "-".join(str(n) for n in p["num_tasks"])
    return f"{training_dir(p)}/analysis-{eval_name(p)}-N{grid}-tf{p['train_fraction']:g}"


ANALYSIS_FILES = ("fit.json", "cells.csv", "relative_distance.png", "posterior_odds.png", "transition_time.png")
