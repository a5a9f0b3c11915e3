"""Job ``analyze_steering_effect_per_layer`` and the seed's presets of it (no torch at import time).

===============================================================================  ===============  ===========
preset                                                                           model            tokens
===============================================================================  ===============  ===========
analyze_steering_effect_per_layer (parameterised)                                huginn-0125      LAST_TOKEN
analyze_steering_effect_per_layer_model_name_huginn-0125                         huginn-0125      LAST_TOKEN
analyze_steering_effect_per_layer_model_name_Meta-Llama-3-8B                     Meta-Llama-3-8B  LAST_TOKEN
mmlu_pro_analyze_steering_effect_per_layer                                       huginn-0125      LAST_TOKEN
mmlu_pro_analyze_steering_effect_per_layer_all_tokens                            huginn-0125      ALL_TOKENS
mmlu_pro_meta-llama-3-8b_analyze_steering_effect_per_layer                       Meta-Llama-3-8B  LAST_TOKEN
mmlu_pro_meta-llama-3-8b_analyze_steering_effect_per_layer_all_tokens            Meta-Llama-3-8B  ALL_TOKENS
===============================================================================  ===============  ===========

All: candidate directions, FEATURE_ADDITION, UNIT_VECTOR, block output
(``post``), scale 1, every layer, prompts without few-shot examples (as the
seed's analysis). The seed took its gradient at the last
token only, so the plain names steer the last token; its ``_all_tokens``
names ran the same command, ours steer every token as the names say. Every
layer means DESIGN.md's numbering: Huginn's flat indices (the seed's), and
Llama blocks 0..31, where the seed's index ``i`` (transformers'
``hidden_states[i]``) is our layer ``i − 1``.
"""

from __future__ import annotations

from typing import Any

from plugins.steering_per_layer.interventions import directions_file, intervention_params
from runner.jobs import DeviceMap, Job, Param, SubJob

HUGINN, LLAMA = "huginn-0125", "Meta-Llama-3-8B"
OUTPUT_DIR = "experiments/steering_effect_per_layer/{model}/{dataset}/{tag}"
OUTPUTS = ("results.json", "effect.csv", "effect.txt", "effect.png")


def effect_tag(params: dict[str, Any]) -> str:
    """A stable folder name from the params that change the numbers."""
    from plugins.steering_per_layer.effect import requested_layers, template_intervention

    layers = requested_layers(params)
    parts = [p for p in template_intervention(params, layers).tag_parts() if not p.startswith("layers=")]
    parts += ["layers=" + "-".join(map(str, layers)) if layers else "",
              f"steps={params['num_steps']}" if params.get("num_steps") is not None else "",
              f"n={params['sample_size']}" if params.get("sample_size") is not None else "",
              f"seed={params['seed']}" if params.get("seed") else "",
              "few_shot" if params.get("few_shot") else ""]
    return ",".join(p for p in parts if p)


def subjobs(params: dict[str, Any]) -> list[SubJob]:
    from plugins.steering_per_layer import directions_variant
    from plugins.steering_per_layer.effect import requested_layers, template_intervention

    template_intervention(params, requested_layers(params))  # plan-time check of every value
    derived = {"tag": effect_tag(params), "directions_variant": directions_variant(params)}
    reads = ["datasets/lirefs/{dataset}.json", directions_file(params)]
    return [SubJob("analyze_steering_effect_per_layer", "plugins.steering_per_layer.effect:analyze_steering_effect",
                   params=derived, reads=reads, writes=[f"{OUTPUT_DIR}/{name}" for name in OUTPUTS])]


def effect_job(name: str, description: str, model: str = HUGINN, **defaults: Any) -> Job:
    params: dict[str, Any] = {
        "model": Param(model, "folder under W/transformers (or a latentrun.toml [models] name)"),
        "dataset": Param("mmlu-pro-3000samples", "LiReFs-schema file W/datasets/lirefs/<dataset>.json"),
        "few_shot": Param(False, "prepend the category's few-shot examples (W/datasets/lirefs/mmlu-pro); the "
                          "seed's analysis prompts have none"),
        "batch_size": Param(8, "prompts per forward (and per backward of the first-order estimate)"),
        "sample_size": Param(None, "random sample of this many items (seeded); default all", type=int),
        "num_steps": Param(None, "Huginn recurrence steps (default: the model's mean_recurrence)", type=int),
        "dtype": Param("auto", "model dtype", choices=("auto", "float32", "bfloat16", "float16")),
        "padding_side": Param("left", "tokenizer padding side (the scorer pads right itself)",
                              choices=("left", "right")),
        "seed": Param(0, "seed of sampling, Huginn's initial state and the bootstrap"),
        "bootstrap": Param(1000, "bootstrap resamples for the interval of each accuracy change"),
    }
    iv = intervention_params(**{"token_modification_mode": "LAST_TOKEN", **defaults})
    iv.pop("with_intervention")  # this analysis always intervenes
    iv["layer_indices"] = Param([], "layers to analyse, one at a time (DESIGN.md's numbering); empty = every layer",
                                type=list)
    params.update(iv)
    return Job(name=name, description=description, params=params, subjobs=subjobs, device_map=DeviceMap("auto"),
               inputs=["transformers/{model}"])


def effect_jobs() -> list[Job]:
    what = ("Per layer: KL, Δ log p(correct) and Δ accuracy at the answer position when steering that layer "
            "({tokens}), on reasoning vs memorizing questions, with a first-order estimate")
    last, every = what.format(tokens="last token"), what.format(tokens="all tokens")
    out = [effect_job("analyze_steering_effect_per_layer", last + " (parameterised)")]
    for model in (HUGINN, LLAMA):
        out.append(effect_job(f"analyze_steering_effect_per_layer_model_name_{model}", f"{model}: {last}",
                              model=model))
    for prefix, model in (("mmlu_pro", HUGINN), ("mmlu_pro_meta-llama-3-8b", LLAMA)):
        base = f"{prefix}_analyze_steering_effect_per_layer"
        out.append(effect_job(base, f"{model}: {last}", model=model))
        out.append(effect_job(base + "_all_tokens", f"{model}: {every}", model=model,
                              token_modification_mode="ALL_TOKENS"))
    return out
