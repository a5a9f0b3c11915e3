"""Built-in plugin ``steering_per_layer``: accuracy on reasoning vs memorizing questions under an intervention.

Job ``evaluate_accuracy_reasoning_memorizing`` (parameterised) and the seed's presets:

==========================================================================  ===========  ==================================
preset                                                                      model        intervention
==========================================================================  ===========  ==================================
mmlu_pro_evaluate_accuracy_reasoning_memorizing                             huginn-0125  none
..._with_intervention                                                       huginn-0125  layer 66, post, all tokens, s=1
..._with_intervention_129                                                   huginn-0125  layer 129
..._with_intervention_1                                                     huginn-0125  layer 1
..._with_intervention_1_all_tokens                                          huginn-0125  layer 1 (= ``_1``, as in the seed)
mmlu_pro_meta-llama-3-8b_evaluate_accuracy_reasoning_memorizing             Llama-3-8B   none
mmlu_pro_meta-llama-3-8b_evaluate_accuracy_reasoning_memorizing_with_...    Llama-3-8B   our layer 20 post (seed: pre-hook
                                                                                         of its layer 21 = hidden_states[21])
==========================================================================  ===========  ==================================

All seed interventions are FEATURE_ADDITION, UNIT_VECTOR, ALL_TOKENS, scale 1,
candidate directions. **Layer numbers address the real models** (Huginn-0125:
2 + 4 x 32 + 2 = 132 layers); the example workspace's tiny Huginn has 10
(1 + 2 x 4 + 1), so run the presets there with ``--set layer_indices=5``.
An out-of-range layer is one clear error before the model is loaded.

Outputs: ``experiments/reasoning_memorizing_accuracy/<model>/<dataset>/<tag>/``
``results.json`` (params, per-subset rows, per-item predictions), ``results.csv``
and ``results.txt`` (the rich table). No torch is imported at import time.
"""

from __future__ import annotations

from typing import Any

from plugins.steering_per_layer.effect_jobs import effect_jobs
from plugins.steering_per_layer.interventions import directions_file, intervention_params
from runner.hookspecs import hookimpl
from runner.jobs import DeviceMap, Job, Param, SubJob

HUGINN, LLAMA = "huginn-0125", "Meta-Llama-3-8B"
OUTPUT_DIR = "experiments/reasoning_memorizing_accuracy/{model}/{dataset}/{tag}"


def tag(params: dict[str, Any]) -> str:
    """A stable folder name from the params that change the numbers."""
    parts = [params["method"], f"steps={params['num_steps']}" if params.get("num_steps") is not None else "",
             f"n={params['sample_size']}" if params.get("sample_size") is not None else "",
             f"seed={params['seed']}" if params.get("seed") else ""]
    if params["with_intervention"]:
        from plugins.steering_per_layer.interventions import Intervention

        parts += Intervention.from_params(params).tag_parts()
    return ",".join(p for p in parts if p)


def directions_variant(params: dict[str, Any]) -> str:
    """The ``@variant`` of the directions file made with this run's ``num_steps`` / ``dtype``."""
    parts = [f"{key}={params[key]}" for key, canonical in (("num_steps", None), ("dtype", "auto"))
             if params.get(key) != canonical]
    return "@" + ",".join(parts) if parts else ""


def subjobs(params: dict[str, Any]) -> list[SubJob]:
    from plugins.steering_per_layer.interventions import Intervention

    if params["with_intervention"]:
        Intervention.from_params(params)  # plan-time check of values and layer list
    derived = {"tag": tag(params), "directions_variant": directions_variant(params)}
    reads = ["datasets/lirefs/{dataset}.json"]
    if params["with_intervention"]:
        reads.append(directions_file(params))
    writes = [f"{OUTPUT_DIR}/results.json", f"{OUTPUT_DIR}/results.csv", f"{OUTPUT_DIR}/results.txt"]
    return [SubJob("evaluate_accuracy_reasoning_memorizing", "plugins.steering_per_layer.evaluate:evaluate_accuracy",
                   params=derived, reads=reads, writes=writes)]


def evaluate_job(name: str, description: str, model: str = HUGINN, **defaults: Any) -> Job:
    params: dict[str, Any] = {
        "model": Param(model, "folder under W/transformers (or a latentrun.toml [models] name)"),
        "dataset": Param("mmlu-pro-3000samples", "LiReFs-schema file W/datasets/lirefs/<dataset>.json"),
        "method": Param("loglik", "loglik: highest next-token log-prob of the option letters after "
                        "'The answer is (' (parse-free); generate: greedy generation + parse_answer",
                        choices=("loglik", "generate")),
        "max_new_tokens": Param(200, "method=generate: new tokens per answer"),
        "few_shot": Param(True, "prepend the category's few-shot examples (W/datasets/lirefs/mmlu-pro) if present"),
        "batch_size": Param(8, "prompts per forward"),
        "sample_size": Param(None, "random sample of this many items (seeded); default all", type=int),
        "num_steps": Param(None, "Huginn recurrence steps (default: the model's mean_recurrence)", type=int),
        "dtype": Param("auto", "model dtype", choices=("auto", "float32", "bfloat16", "float16")),
        "padding_side": Param("left", "padding side when generating", choices=("left", "right")),
        "seed": Param(0, "seed of sampling, Huginn's initial state and the bootstrap"),
        "bootstrap": Param(1000, "bootstrap resamples for the interval of the accuracy difference"),
    }
    layer_indices = defaults.pop("layer_indices", None)
    params.update(intervention_params(layer_indices=layer_indices, **defaults))
    return Job(name=name, description=description, params=params, subjobs=subjobs, device_map=DeviceMap("auto"),
               inputs=["transformers/{model}"])


def jobs() -> list[Job]:
    out = [evaluate_job("evaluate_accuracy_reasoning_memorizing",
                        "Accuracy on reasoning vs memorizing MMLU-Pro questions, optionally under an intervention")]
    base = "mmlu_pro_evaluate_accuracy_reasoning_memorizing"
    out.append(evaluate_job(base, f"Accuracy of {HUGINN} on reasoning vs memorizing questions (no intervention)"))
    for suffix, layer in (("_with_intervention", 66), ("_with_intervention_129", 129), ("_with_intervention_1", 1),
                          ("_with_intervention_1_all_tokens", 1)):
        out.append(evaluate_job(base + suffix, f"Accuracy of {HUGINN} with and without FEATURE_ADDITION along the "
                                f"candidate direction at layer {layer} (132-layer model; override layer_indices on "
                                "smaller ones)", with_intervention=True, layer_indices=[layer]))
    llama = "mmlu_pro_meta-llama-3-8b_evaluate_accuracy_reasoning_memorizing"
    out.append(evaluate_job(llama, f"Accuracy of {LLAMA} on reasoning vs memorizing questions (no intervention)",
                            model=LLAMA))
    out.append(evaluate_job(llama + "_with_intervention", f"Accuracy of {LLAMA} with and without FEATURE_ADDITION at "
                            "our layer 20 (the seed's pre-hook on its block 21)", model=LLAMA, with_intervention=True,
                            layer_indices=[20]))
    out += llama_accuracy_jobs()
    out += effect_jobs()  # analyze_steering_effect_per_layer and its presets
    from plugins.steering_per_layer import lm_eval_jobs

    out += lm_eval_jobs.jobs()
    return out + lm_eval_jobs.group_jobs(out)


def llama_accuracy_jobs() -> list[Job]:
    """The seed's ``evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B*`` presets.

    The seed's hook on its block i (pre-hook, attention / MLP outputs) used the
    direction of ``hidden_states[i]`` = our layer i - 1: ours steer block i at
    ``pre+attn+mlp`` with ``direction_layer_offset=-1``. Its post-hook at 12
    with direction 12 is our layer 11 (where that direction was measured).
    """
    base = "evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B"
    sublayers = {"with_intervention": True, "token_modification_mode": "ALL_TOKENS", "hook_point": "pre+attn+mlp",
                 "direction_layer_offset": -1, "scale": -0.05}
    return [
        evaluate_job(base, f"Accuracy of {LLAMA} on reasoning vs memorizing questions (no intervention)", model=LLAMA),
        evaluate_job(base + "_with_intervention_layer_indices_8_scale_-5e-2", f"Accuracy of {LLAMA}, direction of "
                     "our layer 7 (the seed's 8) added with scale -0.05 at block 8's input, attention and MLP outputs",
                     model=LLAMA, layer_indices=[8], **sublayers),
        evaluate_job(base + "_with_intervention_layer_indices_2_scale_-5e-2", f"Accuracy of {LLAMA}, direction of "
                     "our layer 1 (the seed's 2) added with scale -0.05 at block 2's input, attention and MLP outputs",
                     model=LLAMA, layer_indices=[2], **sublayers),
        evaluate_job(base + "_with_intervention_use_linear_probes_with_hidden_states_post_hook_layer_indices_12_"
                     "modification_mode_last_token_scale_-5e-2", f"Accuracy of {LLAMA}, linear-probe direction at our "
                     "layer 11 (the seed's 12), last token, scale -0.05", model=LLAMA, with_intervention=True,
                     layer_indices=[11], direction_source="linear_probes", token_modification_mode="LAST_TOKEN",
                     scale=-0.05),
    ]


@hookimpl
def latentrun_jobs() -> list[Job]:
    return jobs()
