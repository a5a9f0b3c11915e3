"""Built-in plugin ``candidate_directions``: reasoning-vs-memorizing directions and linear probes.

Jobs (presets of two parameterised jobs, with the seed's names):

* ``save_candidate_directions`` and ``save_candidate_directions_model_name_huginn-0125``
  (huginn-0125, from saved hidden states, as the seed; the seed's README
  lists the second but its runner has no branch for it),
  ``save_candidate_directions_model_name_Meta-Llama-3-8B``,
  ``mmlu_pro_save_candidate_directions`` / ``..._all_tokens`` (huginn-0125,
  streamed from the model in one pass), ``mmlu_pro_meta-llama-3-8b_save_candidate_directions``
  / ``..._all_tokens``;
* ``train_linear_probes`` / ``train_linear_probes_model_name_huginn-0125``
  and ``train_linear_probes_model_name_Meta-Llama-3-8B``.

Outputs (docs/plugins/candidate_directions.md)::

    experiments/candidate_directions/<model>/<dataset>/<mode>[@variant].safetensors (+ .json, .png)
    experiments/linear_probes/<model>/<dataset>/<mode>[@variant]/accuracy.{csv,json,png}, directions.safetensors

Open a directions file with :func:`load_directions`. This module imports no
torch: the work happens in ``directions`` and ``probes``, loaded by the worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugins.common.hidden_states import (
    DATASET_FILE, HIDDEN_STATES_DIR, extraction_params, extraction_subjob, variant,
)
from runner.hookspecs import hookimpl
from runner.jobs import DeviceMap, Job, Param, SubJob

DIRECTIONS = "experiments/candidate_directions/{model}/{dataset}/{mode}{variant}"
PROBES = "experiments/linear_probes/{model}/{dataset}/{mode}{variant}"
HUGINN, LLAMA = "huginn-0125", "Meta-Llama-3-8B"


def load_directions(path: str | Path) -> dict[str, Any]:
    """``{"layers": [...], "unit_direction": {layer: Tensor}, ..., "meta": {...}}`` (see format.py)."""
    from plugins.common.directions_format import load_directions as load

    return load(path)


def directions_subjobs(params: dict[str, Any]) -> list[SubJob]:
    derived = {"variant": variant(params)}
    outputs = [f"{DIRECTIONS}.safetensors", f"{DIRECTIONS}.json", f"{DIRECTIONS}.png"]
    if params["source"] == "hidden_states":
        return [extraction_subjob(params),
                SubJob("save_candidate_directions", "plugins.candidate_directions.directions:from_hidden_states",
                       params=derived, reads=[HIDDEN_STATES_DIR], writes=outputs)]
    uses = ("model", "dataset", "mode", "prompt_template", "sample_size", "num_steps", "init_scale", "seed", "dtype",
            "variant", "source")
    return [SubJob("save_candidate_directions", "plugins.candidate_directions.directions:from_model",
                   params=derived, reads=[DATASET_FILE], writes=outputs, uses=uses)]


def probes_subjobs(params: dict[str, Any]) -> list[SubJob]:
    subjobs = [extraction_subjob(params)]
    reads = [HIDDEN_STATES_DIR]
    control = params.get("control_dataset") or ""
    if control:
        subjobs.append(extraction_subjob(params, "save_hidden_states_control", dataset=control))
        reads.append(HIDDEN_STATES_DIR.replace("{dataset}", control))
    writes = [f"{PROBES}/accuracy.csv", f"{PROBES}/accuracy.json", f"{PROBES}/accuracy.png",
              f"{PROBES}/directions.safetensors", f"{PROBES}/directions.json"]
    subjobs.append(SubJob("train_linear_probes", "plugins.candidate_directions.probes:train_linear_probes",
                          params={"variant": variant(params)}, reads=reads, writes=writes))
    return subjobs


def _directions_job(name: str, description: str, **defaults: Any) -> Job:
    source = defaults.pop("source", "model")
    params: dict[str, Any] = dict(extraction_params(**defaults))
    params["source"] = Param(source, "model: stream the prompts through the model once (nothing stored); "
                             "hidden_states: from save_hidden_states' folder (run first, reused if present)",
                             choices=("model", "hidden_states"))
    return Job(name=name, description=description, params=params, subjobs=directions_subjobs,
               device_map=DeviceMap("auto"), inputs=["transformers/{model}"])


def _probes_job(name: str, description: str, **defaults: Any) -> Job:
    params: dict[str, Any] = dict(extraction_params(**defaults))
    params.update(
        test_ratio=Param(0.25, "held-out fraction (stratified)"),
        control_dataset=Param("surface-matched", "LiReFs-schema control set W/datasets/lirefs/<name>.json whose "
                              "classes share templates and lengths ('' = no surface-matched control)"),
        bootstrap=Param(1000, "bootstrap resamples of the held-out rows for the 95% intervals"),
        probe_C=Param(1.0, "inverse L2 regularisation of the logistic regression"),
        probe_max_iter=Param(1000, "lbfgs iterations"),
    )
    return Job(name=name, description=description, params=params, subjobs=probes_subjobs,
               device_map=DeviceMap("auto"), inputs=["transformers/{model}"])


def jobs() -> list[Job]:
    out = []
    for name, model, source in [("save_candidate_directions", HUGINN, "hidden_states"),
                                (f"save_candidate_directions_model_name_{HUGINN}", HUGINN, "hidden_states"),
                                (f"save_candidate_directions_model_name_{LLAMA}", LLAMA, "hidden_states")]:
        out.append(_directions_job(name, f"Candidate directions of {model} from its saved hidden states (the "
                                         "seed's route: save_hidden_states first, reused if done)",
                                   model=model, source=source))
    for name, model, mode in [("mmlu_pro_save_candidate_directions", HUGINN, "FIRST_ANSWER_TOKEN"),
                              ("mmlu_pro_save_candidate_directions_all_tokens", HUGINN, "ALL_TOKENS"),
                              ("mmlu_pro_meta-llama-3-8b_save_candidate_directions", LLAMA, "FIRST_ANSWER_TOKEN"),
                              ("mmlu_pro_meta-llama-3-8b_save_candidate_directions_all_tokens", LLAMA, "ALL_TOKENS")]:
        out.append(_directions_job(name, f"Reasoning-minus-memorizing directions per layer of {model} "
                                         f"({mode}), streamed from the model in one pass", model=model, mode=mode))
    for name, model in [("train_linear_probes", HUGINN), (f"train_linear_probes_model_name_{HUGINN}", HUGINN),
                        (f"train_linear_probes_model_name_{LLAMA}", LLAMA)]:
        out.append(_probes_job(name, f"Linear probes reasoning vs memorizing per layer of {model}, with "
                                     "shuffled-label and surface-matched controls", model=model))
    return out


@hookimpl
def latentrun_jobs() -> list[Job]:
    return jobs()
