"""Jobs ``evaluate_lm_eval`` (parameterised), the seed's lm-eval presets, and the groups ``mmlu`` / ``mmlu_pro``.

Every seed preset is FEATURE_ADDITION, ``post`` (the seed's hidden-states
post-hook), scale 1, unless its row says otherwise; Huginn's layer numbers
are ours as they are (132 layers at 32 steps), the seed's Llama index i is
our layer i − 1.

===================================================================  ============================================
preset                                                               what it runs
===================================================================  ============================================
mmlu_evaluate_lm_eval                                                huginn-0125, mmlu, 0-shot, no intervention
mmlu_evaluate_lm_eval_few_shots_1                                    same, 1-shot
mmlu_evaluate_lm_eval_with_intervention                              layer 66, candidate directions, ALL_TOKENS
..._with_intervention_1 / _127 / _129                                layer 1 / 127 / 129
..._with_intervention_1_all_tokens                                   layer 1, directions made over ALL_TOKENS
..._with_intervention_1_all_tokens_scale_with_overall_magnitude      same, SCALE_WITH_OVERALL_MAGNITUDE
..._with_intervention_scale_with_overall_magnitude_feature_...       layer 66, FEATURE_AMPLIFICATION,
amplification                                                        SCALE_WITH_OVERALL_MAGNITUDE
..._with_intervention_use_linear_probes (+ _few_shots_1)             linear-probe direction, layer 31
mmlu_pro_evaluate_lm_eval (+ _few_shots_1)                           mmlu_pro (5-shot CoT generation task,
                                                                     run 0-shot as the seed does / 1-shot)
mmlu_pro_evaluate_lm_eval_with_intervention                          layer 66, LAST_TOKEN
mmlu_pro_evaluate_lm_eval_with_intervention_129                      layer 129, ALL_TOKENS
evaluate_lm_eval_tasks_piqa (+ _use_linear_probes)                   piqa 0-shot (probes: layer 31, LAST_TOKEN)
evaluate_lm_eval_model_name_Meta-Llama-3-8B                          Llama-3-8B, mmlu, no intervention
..._with_intervention_user_linear_probes (sic, the seed's name)      probes, our layer 11 (seed 12), LAST_TOKEN
===================================================================  ============================================

Outputs: ``experiments/lm_eval/<model>/<tasks>/<tag>/`` ``results.json``
(lm-eval's results dict — results, groups, configs, versions, n-shot,
n-samples, … — plus ``latentrun``: params, intervention, the baseline it was
compared with), ``results.csv`` and ``results.txt`` (the rich table; with an
intervention, beside the unsteered run's numbers when that run exists), and
``samples.jsonl`` with ``log_samples=true``. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from plugins.steering_per_layer.interventions import directions_file, intervention_params
from plugins.steering_per_layer.lm_eval_tasks import required_dirs
from runner.jobs import DeviceMap, Job, Param, SubJob

HUGINN, LLAMA = "huginn-0125", "Meta-Llama-3-8B"
RESULTS_DIR = "experiments/lm_eval/{model}/{tasks}/{tag}"
FUNCTION = "plugins.steering_per_layer.lm_eval_run:evaluate_lm_eval"
# Order in which the groups run the families (the seed's order: analysis, accuracy, lm-eval).
GROUP_ORDER = ("analyze_steering_effect_per_layer", "evaluate_accuracy_reasoning_memorizing", "evaluate_lm_eval")


def tag(params: dict[str, Any]) -> str:
    """Folder name from the params that change the numbers (the intervention's included)."""
    from plugins.steering_per_layer.interventions import Intervention
    from runner.plan import stable_hash

    shots = params.get("num_fewshot")
    parts = [f"shots={'default' if shots is None else shots}",
             f"limit={params['limit']:g}" if params.get("limit") is not None else "",
             f"steps={params['num_steps']}" if params.get("num_steps") is not None else "",
             f"max_gen_toks={params['max_gen_toks']}" if params.get("max_gen_toks") else "",
             f"dtype={params['dtype']}" if params.get("dtype", "auto") != "auto" else "",
             f"seed={params['seed']}" if params.get("seed") else "",
             "data=" + stable_hash([params.get("dataset_paths") or {}, params.get("task_paths") or []], 8)
             if params.get("dataset_paths") or params.get("task_paths") else ""]
    if params["with_intervention"]:
        parts += Intervention.from_params(params).tag_parts()
    return ",".join(p for p in parts if p)


def results_dir(params: dict[str, Any]) -> str:
    """Workspace-relative results folder of a run with these params."""
    from runner.jobs import format_path

    return format_path(RESULTS_DIR, {**params, "tag": tag(params)})


def subjobs(params: dict[str, Any]) -> list[SubJob]:
    from plugins.steering_per_layer import directions_variant
    from plugins.steering_per_layer.interventions import Intervention, InterventionError

    if not params["tasks"]:
        raise InterventionError("tasks is empty: name at least one lm-eval task (mmlu, mmlu_pro, piqa, ...)")
    if int(params["batch_size"]) < 1:
        raise InterventionError(f"batch_size={params['batch_size']}: must be at least 1")
    if params.get("limit") is not None and not float(params["limit"]) > 0:
        raise InterventionError(f"limit={params['limit']}: give a count (>= 1) or a fraction in (0, 1)")
    if params["with_intervention"]:
        Intervention.from_params(params)  # bad values: one clear error at plan time
    reads = required_dirs(params["tasks"], params.get("dataset_paths") or {})
    reads += [t for t in params.get("task_paths") or [] if not t.startswith("/")]
    if params["with_intervention"]:
        reads.append(directions_file(params))
    derived = {"tag": tag(params), "directions_variant": directions_variant(params)}
    writes = [f"{RESULTS_DIR}/results.json", f"{RESULTS_DIR}/results.csv", f"{RESULTS_DIR}/results.txt"]
    return [SubJob("evaluate_lm_eval", FUNCTION, params=derived, reads=reads, writes=writes)]


def lm_eval_job(name: str, description: str, model: str = HUGINN, tasks: tuple[str, ...] = ("mmlu",),
                num_fewshot: int | None = 0, **defaults: Any) -> Job:
    params: dict[str, Any] = {
        "model": Param(model, "folder under W/transformers (or a latentrun.toml [models] name)"),
        "tasks": Param(list(tasks), "lm-eval tasks or groups: mmlu, mmlu_pro, mmlu_pro_loglik, piqa (local, from "
                       "W/datasets), their sub-tasks, names in task_paths, or any built-in lm-eval task", type=list),
        "num_fewshot": Param(num_fewshot, "few-shot examples (None: each task's own default)", type=int),
        "limit": Param(None, "at most this many documents per task (a fraction when below 1)", type=float),
        "batch_size": Param(4, "requests per forward (given to HFLM)", type=int),
        "num_steps": Param(None, "Huginn recurrence steps (default: the model's mean_recurrence; the seed: 32)",
                           type=int),
        "dtype": Param("auto", "model dtype", choices=("auto", "float32", "bfloat16", "float16")),
        "seed": Param(0, "lm-eval's random, numpy, torch and few-shot seeds (Huginn's initial state too)"),
        "max_gen_toks": Param(None, "generation tasks (mmlu_pro): cap on new tokens per answer, overriding the "
                              "task's own (2,048 for mmlu_pro, which needs a context longer than that)", type=int),
        "bootstrap_iters": Param(1000, "lm-eval bootstrap resamples for the stderr of non-mean metrics"),
        "log_samples": Param(False, "also write every scored request to samples.jsonl"),
        "task_paths": Param([], "extra folders of lm-eval task YAMLs (workspace-relative or absolute)", type=list),
        "dataset_paths": Param({}, "data folders under W/datasets per family, overriding the defaults "
                               "{\"mmlu\": \"cais/mmlu\", \"mmlu_pro\": \"TIGER-Lab/MMLU-Pro\", \"piqa\": "
                               "\"ybisk/piqa\"}", type=dict),
    }
    layer_indices = defaults.pop("layer_indices", None)
    params.update(intervention_params(layer_indices=layer_indices, **defaults))
    return Job(name=name, description=description, params=params, subjobs=subjobs, device_map=DeviceMap("auto"),
               inputs=["transformers/{model}"])


def _steered(layer: int, **settings: Any) -> dict[str, Any]:
    return {"with_intervention": True, "layer_indices": [layer], **settings}


def jobs() -> list[Job]:
    """The parameterised job and every seed preset."""
    out = [lm_eval_job("evaluate_lm_eval", "lm-evaluation-harness on any task, optionally under an intervention",
                       num_fewshot=None)]
    probes = {"direction_source": "linear_probes", "token_modification_mode": "LAST_TOKEN"}
    all_tokens = {"token_modification_mode": "ALL_TOKENS"}
    mmlu = [
        ("", "no intervention", {}),
        ("_few_shots_1", "1-shot, no intervention", {"num_fewshot": 1}),
        ("_with_intervention", "candidate direction at layer 66", _steered(66, **all_tokens)),
        ("_with_intervention_1", "candidate direction at layer 1", _steered(1, **all_tokens)),
        ("_with_intervention_127", "candidate direction at layer 127", _steered(127, **all_tokens)),
        ("_with_intervention_129", "candidate direction at layer 129", _steered(129, **all_tokens)),
        ("_with_intervention_1_all_tokens", "layer 1, direction computed over all tokens",
         _steered(1, directions_mode="ALL_TOKENS", **all_tokens)),
        ("_with_intervention_1_all_tokens_scale_with_overall_magnitude",
         "layer 1, all-token direction, SCALE_WITH_OVERALL_MAGNITUDE",
         _steered(1, directions_mode="ALL_TOKENS", direction_normalization_mode="SCALE_WITH_OVERALL_MAGNITUDE",
                  **all_tokens)),
        ("_with_intervention_scale_with_overall_magnitude_feature_amplification",
         "FEATURE_AMPLIFICATION scaled with the overall magnitude at layer 66",
         _steered(66, modification_mode="FEATURE_AMPLIFICATION",
                  direction_normalization_mode="SCALE_WITH_OVERALL_MAGNITUDE", **all_tokens)),
        ("_with_intervention_use_linear_probes", "linear-probe direction at layer 31",
         _steered(31, direction_source="linear_probes", **all_tokens)),
        ("_with_intervention_use_linear_probes_few_shots_1", "1-shot, linear-probe direction at layer 31",
         _steered(31, direction_source="linear_probes", num_fewshot=1, **all_tokens)),
    ]
    for suffix, what, settings in mmlu:
        out.append(lm_eval_job(f"mmlu_evaluate_lm_eval{suffix}", f"MMLU (lm-eval) on {HUGINN}: {what}", **settings))
    mmlu_pro = [
        ("", "no intervention", {}),
        ("_few_shots_1", "1-shot, no intervention", {"num_fewshot": 1}),
        ("_with_intervention", "candidate direction at layer 66, last token",
         _steered(66, token_modification_mode="LAST_TOKEN")),
        ("_with_intervention_129", "candidate direction at layer 129", _steered(129, **all_tokens)),
    ]
    for suffix, what, settings in mmlu_pro:
        out.append(lm_eval_job(f"mmlu_pro_evaluate_lm_eval{suffix}", f"MMLU-Pro (lm-eval) on {HUGINN}: {what}",
                               tasks=("mmlu_pro",), **settings))
    out.append(lm_eval_job("evaluate_lm_eval_tasks_piqa", f"PIQA (lm-eval, 0-shot) on {HUGINN}", tasks=("piqa",)))
    out.append(lm_eval_job("evaluate_lm_eval_tasks_piqa_use_linear_probes",
                           f"PIQA (lm-eval, 0-shot) on {HUGINN}, linear-probe direction at layer 31, last token",
                           tasks=("piqa",), **_steered(31, **probes)))
    llama = "evaluate_lm_eval_model_name_Meta-Llama-3-8B"
    out.append(lm_eval_job(llama, f"MMLU (lm-eval) on {LLAMA}, no intervention", model=LLAMA))
    out.append(lm_eval_job(llama + "_with_intervention_user_linear_probes",
                           f"MMLU (lm-eval) on {LLAMA}, linear-probe direction at our layer 11 (the seed's 12), "
                           "last token", model=LLAMA, **_steered(11, **probes)))
    return out


def group_jobs(all_jobs: list[Job]) -> list[Job]:
    """``mmlu_pro`` and ``mmlu``: every preset of the family, in the seed's order (analysis, accuracy, lm-eval)."""
    def members(prefix: str) -> list[str]:
        names = [j.name for j in all_jobs if j.name.startswith(prefix) and not j.is_group]
        ranked = [n for family in GROUP_ORDER for n in names if family in n]
        return ranked

    return [Job(name="mmlu_pro", description="All mmlu_pro_* presets: steering effect per layer, accuracy on "
                "reasoning vs memorizing questions, lm-eval MMLU-Pro (the seed's group)",
                group=members("mmlu_pro_")),
            Job(name="mmlu", description="All mmlu_* lm-eval presets on MMLU (the seed's group)",
                group=members("mmlu_evaluate_"))]
