"""Entry point ``icm_label``: Internal Coherence Maximization (Wen et al. 2025, arXiv 2506.10139).

ICM labels a data set with no human labels: it searches for the labels
that a language model finds most mutually predictable (each label predicted
from all the others in context) and that break the fewest logical
consistency rules, U(D) = alpha·MP(D) − I(D), by simulated annealing.

One job, ``icm_label`` (docs/plugins/icm_label.md), with the sub-jobs

* ``search`` — the ICM search, batch by batch, checkpointed (labels JSONL, trajectory);
* ``zero_shot`` — every claim labelled with no demonstrations (the baseline);
* ``report`` — label accuracy of ICM vs zero-shot vs random labels (when gold labels exist),
  consistency, trajectory plot;
* ``evaluate`` (with ``eval_file``) — ICM labels as many-shot demonstrations on held-out
  claims vs gold, zero-shot and random labels, with bootstrap intervals.

Every argument of the published ``ICM.py`` is a param with its meaning and
default. This module imports neither torch nor ``models``.
"""

from __future__ import annotations

from typing import Any

from runner.hookspecs import hookimpl
from runner.jobs import Job, Param, SubJob
from plugins.icm_label import layout

STEPS = "plugins.icm_label.steps"
DEFAULT_TRAIN_FILE = "datasets/icm/train_{testbed}.json"


def icm_params() -> dict[str, Param]:
    """The seed's arguments first (same names and defaults), then ours."""
    return {
        # --- the published ICM.py arguments
        "seed": Param(27565976, "random seed (batches, seed labels, sampling, annealing)", int),
        "alpha": Param(30.0, "weight of mutual predictability in U = alpha·MP − I (the paper uses 30–50)", float),
        "testbed": Param("gsm8k", "truthfulqa, gsm8k, alpaca, truthfulqa_preference, ethics, or one a plugin adds",
                         str),
        "model": Param("meta-llama/Llama-3.1-70B", "pretrained base model: W/transformers/<name> (local backend) or "
                                                   "the served model's name (openai backend)", str),
        "batch_size": Param(256, "claims per ICM run: the data set is split into groups-preserving batches of about "
                                 "this size, labelled independently", int),
        "num_seed": Param(8, "claims labelled at random at the start (exactly half true)", int),
        "K": Param(3000, "iterations of the search per batch", int),
        "consistency_fix_K": Param(10, "rounds of consistency fix per proposal", int),
        "decay": Param(0.99, "temperature decay per accepted change (scheduler=exp)", float),
        "initial_T": Param(10.0, "initial annealing temperature", float),
        "final_T": Param(0.01, "lowest annealing temperature", float),
        "scheduler": Param("log", "log: max(final_T, initial_T/(1+2·ln(1+n))); exp: max(final_T, initial_T·decay^n); "
                                  "n = accepted changes", str, choices=["log", "exp"]),
        # --- data and rules
        "train_file": Param(DEFAULT_TRAIN_FILE, "claims to label (JSON list as published, or JSON lines); "
                                                "{testbed} is filled in", str),
        "consistency_key": Param("", "override the testbed's consistency key: normalised_choice, answer, "
                                     "ordered_pair, text, or field:<column>", str),
        "mp_reduction": Param("mean", "combine per-claim log-odds by their mean (published code) or sum (paper)", str,
                              choices=["mean", "sum"]),
        "group_weight": Param(100.0, "sampling weight of unlabelled claims whose group has a label (others: 1)",
                              float),
        "max_batches": Param(0, "label only the first N batches (0: all)", int),
        "checkpoint_every": Param(10, "save the search state every N iterations", int),
        # --- backends
        "backend": Param("local", "local (transformers), openai (completions server with logprobs) or planted "
                                  "(simulator with planted preferences, for checking the search)", str,
                         choices=["local", "openai", "planted"]),
        "dtype": Param("float32", "local backend: weights dtype", str,
                       choices=["float32", "float64", "bfloat16", "float16"]),
        "prefix_reuse": Param(True, "local backend: reuse the key/value cache of shared prompt prefixes", bool),
        "prefix_cache_tokens": Param(200_000, "local backend: tokens of key/values kept between calls", int),
        "threads": Param(0, "torch threads for the sub-jobs (0: torch's default)", int),
        "api_base": Param("", "openai backend: server URL, e.g. http://localhost:8000/v1 (else $ICM_API_BASE or "
                              "$OPENAI_BASE_URL)", str),
        "api_model": Param("", "openai backend: model name on the server (default: model)", str),
        "api_key_env": Param("OPENAI_API_KEY", "openai backend: environment variable holding the API key", str),
        "logprobs": Param(20, "openai backend: top-k logprobs requested", int),
        "timeout": Param(100.0, "openai backend: seconds per request", float),
        "max_retries": Param(5, "openai backend: retries after a failed request", int),
        "backoff": Param(1.0, "openai backend: first retry delay in seconds (x1.5 per retry)", float),
        "request_batch": Param(16, "openai backend: prompts per request", int),
        "planted_strength": Param(1.0, "planted backend: how much a claim alone leans to its planted label", float),
        "planted_noise": Param(1.5, "planted backend: s.d. of the per-claim noise", float),
        "planted_context": Param(2.0, "planted backend: pull of the demonstrations' agreement", float),
        # --- downstream evaluation
        "eval_file": Param("", "held-out claims with gold labels for the many-shot evaluation ('' skips it); "
                               "{testbed} is filled in", str),
        "num_shots": Param(0, "demonstrations per held-out claim (0: every labelled training claim)", int),
    }


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Plan-time checks (before any model loads); returns the params with the testbed name made canonical."""
    from plugins.icm_label.testbeds import get_testbed

    problems = []
    positive = {"batch_size": 2, "num_seed": 2, "K": 0, "consistency_fix_K": 0, "checkpoint_every": 0,
                "max_batches": 0, "num_shots": 0, "logprobs": 1, "request_batch": 1, "max_retries": 0,
                "prefix_cache_tokens": 0, "threads": 0}
    for key, low in positive.items():
        if params[key] < low:
            problems.append(f"{key} must be >= {low}, got {params[key]}")
    if params["alpha"] < 0:
        problems.append(f"alpha must be >= 0, got {params['alpha']}")
    if not 0 < params["final_T"] <= params["initial_T"]:
        problems.append(f"need 0 < final_T <= initial_T, got final_T={params['final_T']}, "
                        f"initial_T={params['initial_T']}")
    if not 0 < params["decay"] <= 1:
        problems.append(f"decay must be in (0, 1], got {params['decay']}")
    if params["timeout"] <= 0:
        problems.append(f"timeout must be > 0, got {params['timeout']}")
    try:
        bed = get_testbed(params["testbed"], params["consistency_key"])
    except ValueError as err:
        problems.append(str(err))
        bed = None
    if params["backend"] == "openai":
        from plugins.icm_label.openai_backend import API_BASE_ENVS, resolve_api_base

        if not resolve_api_base(params["api_base"]):
            problems.append(f"backend=openai needs the server URL: --set api_base=http://host:8000/v1 or the "
                            f"environment variable {API_BASE_ENVS[0]}")
    if problems:
        raise ValueError("icm_label: " + "; ".join(problems))
    out = dict(params)
    out["testbed"] = bed.name  # type: ignore[union-attr]
    out["train_file"] = params["train_file"].replace("{testbed}", bed.name)  # type: ignore[union-attr]
    out["eval_file"] = params["eval_file"].replace("{testbed}", bed.name)  # type: ignore[union-attr]
    return out


def build_subjobs(params: dict[str, Any]) -> list[SubJob]:
    p = check_params(params)
    fixed = {"testbed": p["testbed"], "train_file": p["train_file"], "eval_file": p["eval_file"]}
    model_reads = []
    if p["backend"] == "local":
        from runner.workspace import model_in_hf_cache

        # a model found only in the local Hugging Face cache is not a workspace path
        model_reads = [] if model_in_hf_cache(p["model"]) else [f"transformers/{p['model']}"]
    group = f"icm:{p['model']}" if p["backend"] == "local" else ""
    search = layout.search_files(p)
    zero = layout.zero_shot_file(p)
    subjobs = [
        SubJob("search", f"{STEPS}:search", params=dict(fixed), reads=model_reads + [p["train_file"]],
               writes=list(search.values()), uses=layout.search_uses(p), process_group=group),
        SubJob("zero_shot", f"{STEPS}:zero_shot", params=dict(fixed), reads=model_reads + [p["train_file"]],
               writes=[zero], uses=layout.data_uses(p), process_group=group),
        SubJob("report", f"{STEPS}:report", params=dict(fixed), reads=[p["train_file"], search["labels"],
               search["trajectory_json"], zero], writes=list(layout.report_files(p).values()),
               uses=layout.search_uses(p)),
    ]
    if p["eval_file"]:
        subjobs.append(SubJob("evaluate", f"{STEPS}:evaluate", params=dict(fixed),
                              reads=model_reads + [p["train_file"], p["eval_file"], search["labels"]],
                              writes=list(layout.downstream_files(p).values()),
                              uses=layout.search_uses(p) + layout.EVAL_KEYS, process_group=group))
    return subjobs


@hookimpl
def latentrun_jobs() -> list[Job]:
    return [Job(name="icm_label",
                description="ICM: label claims without human labels (mutual predictability + consistency)",
                params=icm_params(), subjobs=build_subjobs)]
