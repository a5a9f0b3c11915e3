"""Every job name the steering seed lists (its README and its runner) exists, under the seed's spelling.

Researchers come with the seed's commands; a renamed or forgotten preset
breaks them. The list is the seed's, typos included (``user_linear_probes``).
"""

from __future__ import annotations

import unittest

from runner.pluginmanager import load_plugins

SEED_README = """
save_hidden_states mmlu_pro_save_hidden_states
mmlu_pro_save_candidate_directions mmlu_pro_save_candidate_directions_all_tokens
mmlu_pro_meta-llama-3-8b_save_candidate_directions mmlu_pro_meta-llama-3-8b_save_candidate_directions_all_tokens
mmlu_pro_analyze_steering_effect_per_layer mmlu_pro_analyze_steering_effect_per_layer_all_tokens
mmlu_pro_meta-llama-3-8b_analyze_steering_effect_per_layer
mmlu_pro_meta-llama-3-8b_analyze_steering_effect_per_layer_all_tokens
mmlu_pro_evaluate_accuracy_reasoning_memorizing mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention
mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention_1
mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention_129
mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention_1_all_tokens
mmlu_pro_meta-llama-3-8b_evaluate_accuracy_reasoning_memorizing
mmlu_pro_meta-llama-3-8b_evaluate_accuracy_reasoning_memorizing_with_intervention
mmlu_pro_evaluate_lm_eval mmlu_pro_evaluate_lm_eval_few_shots_1
mmlu_pro_evaluate_lm_eval_with_intervention mmlu_pro_evaluate_lm_eval_with_intervention_129
mmlu_evaluate_lm_eval mmlu_evaluate_lm_eval_with_intervention mmlu_evaluate_lm_eval_with_intervention_1
mmlu_evaluate_lm_eval_with_intervention_127 mmlu_evaluate_lm_eval_with_intervention_129
mmlu_evaluate_lm_eval_with_intervention_1_all_tokens
mmlu_evaluate_lm_eval_with_intervention_1_all_tokens_scale_with_overall_magnitude
mmlu_evaluate_lm_eval_with_intervention_scale_with_overall_magnitude_feature_amplification
mmlu_evaluate_lm_eval_with_intervention_use_linear_probes
mmlu_evaluate_lm_eval_with_intervention_use_linear_probes_few_shots_1
mmlu_pro mmlu
"""

SEED_RUNNER = """
save_hidden_states_model_name_Meta-Llama-3-8B
save_candidate_directions save_candidate_directions_model_name_huginn-0125
save_candidate_directions_model_name_Meta-Llama-3-8B
train_linear_probes_model_name_huginn-0125 train_linear_probes_model_name_Meta-Llama-3-8B
analyze_steering_effect_per_layer_model_name_huginn-0125 analyze_steering_effect_per_layer_model_name_Meta-Llama-3-8B
evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B
evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B_with_intervention_layer_indices_8_scale_-5e-2
evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B_with_intervention_layer_indices_2_scale_-5e-2
evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B_with_intervention_use_linear_probes_with_hidden_states_post_hook_layer_indices_12_modification_mode_last_token_scale_-5e-2
evaluate_lm_eval_model_name_Meta-Llama-3-8B evaluate_lm_eval_model_name_Meta-Llama-3-8B_with_intervention_user_linear_probes
evaluate_lm_eval_tasks_piqa evaluate_lm_eval_tasks_piqa_use_linear_probes
"""


class SeedJobNamesTest(unittest.TestCase):
    def test_every_seed_job_name_is_a_job(self) -> None:
        registry = load_plugins()
        known = registry.jobs()
        self.assertEqual(registry.job_errors, [])
        missing = [name for name in (SEED_README + SEED_RUNNER).split() if name not in known]
        self.assertEqual(missing, [], "seed job names with no latentrun job")

    def test_group_jobs_run_their_family(self) -> None:
        known = load_plugins().jobs()
        for group in ("mmlu_pro", "mmlu"):
            members = known[group].group
            self.assertTrue(members, group)
            self.assertTrue(all(name.startswith(group + "_") and name in known for name in members), members)
