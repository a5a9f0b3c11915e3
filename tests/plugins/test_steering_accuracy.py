"""steering_per_layer: interventions (exact formulas, errors before loading) and the accuracy job."""

from __future__ import annotations

import json
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch

from models.capture import capture
from plugins.steering_per_layer import evaluate_job, jobs
from plugins.steering_per_layer.interventions import Intervention, InterventionError, preflight
from runner.jobs import ParamError
from runner.workspace import Workspace
from tests.plugins.directions_support import context, tiny_llama
from tests.support import REPO_ROOT

EXAMPLE = REPO_ROOT / "workspace.example"
HUGINN_DIRECTIONS = "experiments/candidate_directions/huginn-0125/mmlu-pro-3000samples/FIRST_ANSWER_TOKEN.safetensors"


def intervention(**overrides) -> Intervention:
    params = {"modification_mode": "FEATURE_ADDITION", "direction_normalization_mode": "UNIT_VECTOR",
              "token_modification_mode": "ALL_TOKENS", "hook_point": "post", "layer_indices": [1], "scale": 1.0,
              "direction_source": "candidate_directions"}
    params.update(overrides)
    return Intervention.from_params(params)


def example_copy(root: Path) -> Workspace:
    """The parts of the example workspace the job needs (tiny Huginn, data, candidate directions)."""
    for part in ("latentrun.toml", "transformers/tiny-huginn-0125", "transformers/tiny-llama-3-8b", "datasets/lirefs",
                 "experiments/candidate_directions/huginn-0125"):
        source, target = EXAMPLE / part, root / part
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return Workspace.open(root)


def sub_context(ws: Workspace, job_name: str, **overrides):
    job = next(j for j in jobs() if j.name == job_name)
    params = job.defaults()
    params.update(overrides)
    for key, value in overrides.items():
        job.params[key].check(key, value)
    sub = job.build_subjobs(params)[0]
    return context(ws, sub.function, {**params, **sub.params}, sub.reads, sub.writes, name=job_name)


class TestFormulas(unittest.TestCase):
    def setUp(self):
        self.model = tiny_llama(vocab=40, seed=1)
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 40, (2, 7), generator=g)
        raw = torch.randn(16, generator=g)
        self.unit = raw / raw.norm()
        self.dirs = {"unit_direction": {1: self.unit}, "overall_mean": {1: torch.randn(16, generator=g)}}

    def hooked_output(self, iv: Intervention | None) -> torch.Tensor:
        with torch.no_grad(), capture(self.model, [1], point="post", reduction="all") as cap:
            if iv is None:
                self.model(input_ids=self.ids)
            else:
                with iv.steer(self.model, self.dirs):
                    self.model(input_ids=self.ids)
        return cap.values[1]

    def test_addition_changes_the_hooked_output_by_exactly_s_unit(self):
        base = self.hooked_output(None)
        for scale in (2.5, -0.75):
            steered = self.hooked_output(intervention(scale=scale))
            torch.testing.assert_close(steered - base, (scale * self.unit).expand_as(base), atol=1e-5, rtol=0)

    def test_last_token_addition_touches_only_the_last_token(self):
        base = self.hooked_output(None)
        steered = self.hooked_output(intervention(scale=3.0, token_modification_mode="LAST_TOKEN"))
        torch.testing.assert_close(steered[:, :-1], base[:, :-1])
        torch.testing.assert_close(steered[:, -1] - base[:, -1], (3.0 * self.unit).expand(2, 16), atol=1e-5, rtol=0)

    def test_overall_magnitude_scales_by_the_mean_norm(self):
        base = self.hooked_output(None)
        steered = self.hooked_output(intervention(scale=0.5, direction_normalization_mode="SCALE_WITH_OVERALL_MAGNITUDE"))
        expected = 0.5 * self.dirs["overall_mean"][1].norm() * self.unit
        torch.testing.assert_close(steered - base, expected.expand_as(base), atol=1e-5, rtol=0)

    def test_ablation_leaves_no_component(self):
        base = self.hooked_output(None)
        self.assertGreater(float((base @ self.unit).abs().max()), 1e-2)
        ablated = self.hooked_output(intervention(modification_mode="FEATURE_ABLATION"))
        self.assertLess(float((ablated @ self.unit).abs().max()), 1e-5)

    def test_amplification(self):
        base = self.hooked_output(None)
        steered = self.hooked_output(intervention(modification_mode="FEATURE_AMPLIFICATION", scale=2.0))
        expected = 2.0 * (base @ self.unit).unsqueeze(-1) * self.unit
        torch.testing.assert_close(steered - base, expected, atol=1e-5, rtol=1e-5)

    def test_scale_zero_reproduces_the_logits_exactly(self):
        with torch.no_grad():
            base = self.model(input_ids=self.ids).logits
            with intervention(scale=0.0).steer(self.model, self.dirs):
                steered = self.model(input_ids=self.ids).logits
        self.assertTrue(torch.equal(base, steered))


class TestErrors(unittest.TestCase):
    def test_bad_values_fail_at_plan_time(self):
        job = evaluate_job("x", "x", with_intervention=True)
        for key, value in (("modification_mode", "FEATURE_SUBTRACTION"), ("hook_point", "resid_mid"),
                           ("token_modification_mode", "FIRST_TOKEN"),
                           ("direction_normalization_mode", "UNIT"), ("direction_source", "pca")):
            with self.assertRaisesRegex(ParamError, key):
                job.params[key].parse(key, value)
            params = job.defaults() | {key: value}
            with self.assertRaisesRegex(InterventionError, key):
                job.build_subjobs(params)
        with self.assertRaisesRegex(InterventionError, "empty"):
            job.build_subjobs(job.defaults() | {"layer_indices": []})
        self.assertEqual(job.params["layer_indices"].parse("layer_indices", "3,5"), [3, 5])

    def test_layer_out_of_range_and_wrong_model_before_loading(self):
        with tempfile.TemporaryDirectory() as tmp:
            ws = example_copy(Path(tmp) / "ws")
            directions = ws.path(HUGINN_DIRECTIONS)
            with self.assertRaisesRegex(InterventionError, r"\[66\] out of range.*0\.\.9"):
                preflight(intervention(layer_indices=[66]), "huginn-0125", ws.path("transformers/huginn-0125"),
                          directions)
            with self.assertRaisesRegex(InterventionError, "made for model 'huginn-0125'"):
                preflight(intervention(layer_indices=[1]), "Meta-Llama-3-8B", ws.path("transformers/Meta-Llama-3-8B"),
                          directions)
            sidecar = directions.with_suffix(".json")
            meta = json.loads(sidecar.read_text())
            sidecar.write_text(json.dumps(meta | {"hidden_size": 7}))
            with self.assertRaisesRegex(InterventionError, "hidden size 7"):
                preflight(intervention(layer_indices=[1]), "huginn-0125", ws.path("transformers/huginn-0125"),
                          directions)
            sidecar.write_text(json.dumps(meta))
            # the sub-job raises before load_model is ever called (the default preset layer 66 > 9 layers here)
            ctx = sub_context(ws, "mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention")
            from plugins.steering_per_layer import evaluate

            with mock.patch("plugins.common.extraction.load", side_effect=AssertionError("model loaded")):
                with self.assertRaisesRegex(InterventionError, "out of range"):
                    evaluate.evaluate_accuracy(ctx)
            ctx = sub_context(ws, "mmlu_pro_meta-llama-3-8b_evaluate_accuracy_reasoning_memorizing_with_intervention",
                              layer_indices=[1])
            shutil.copytree(ws.path("experiments/candidate_directions/huginn-0125"),
                            ws.path("experiments/candidate_directions/Meta-Llama-3-8B"))
            with mock.patch("plugins.common.extraction.load", side_effect=AssertionError("model loaded")):
                with self.assertRaisesRegex(InterventionError, "made for model 'huginn-0125'"):
                    evaluate.evaluate_accuracy(ctx)


class TestAccuracyJob(unittest.TestCase):
    def test_example_workspace_scale_zero_equals_baseline_and_outputs(self):
        from plugins.steering_per_layer.evaluate import evaluate_accuracy

        with tempfile.TemporaryDirectory() as tmp:
            ws = example_copy(Path(tmp) / "ws")
            ctx = sub_context(ws, "mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention",
                              layer_indices=[5], scale=0.0, sample_size=24, bootstrap=100)
            self.assertIn(HUGINN_DIRECTIONS, [str(p.relative_to(ws.root)) for p in ctx.reads])
            evaluate_accuracy(ctx)
            result = json.loads(ctx.writes[0].read_text())
            self.assertEqual(sum(r["n"] for r in result["subsets"]), 24)
            for row in result["subsets"]:
                self.assertEqual(row["accuracy_baseline"], row["accuracy_steered"])
                self.assertEqual(row["difference"], 0.0)
            for item in result["items"]:
                self.assertEqual(item["baseline_scores"], item["steered_scores"])
            self.assertIn("subset", ctx.writes[1].read_text().splitlines()[0])
            self.assertIn("reasoning", ctx.writes[2].read_text())

            ctx = sub_context(ws, "mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention",
                              layer_indices=[5], scale=50.0, sample_size=24, bootstrap=100)
            evaluate_accuracy(ctx)
            result = json.loads(ctx.writes[0].read_text())
            changed = sum(item["baseline_scores"] != item["steered_scores"] for item in result["items"])
            self.assertEqual(changed, 24)

    def test_generate_method_counts_unparseable_answers_and_scale_zero_matches(self):
        from plugins.steering_per_layer.evaluate import evaluate_accuracy

        with tempfile.TemporaryDirectory() as tmp:
            ws = example_copy(Path(tmp) / "ws")
            ctx = sub_context(ws, "mmlu_pro_evaluate_accuracy_reasoning_memorizing_with_intervention_1",
                              layer_indices=[1], scale=0.0, sample_size=4, bootstrap=20, method="generate",
                              max_new_tokens=4)
            evaluate_accuracy(ctx)
            result = json.loads(ctx.writes[0].read_text())
            for item in result["items"]:
                self.assertEqual(item["baseline_response"], item["steered_response"])
            no_answers = sum(item["baseline_prediction"] is None for item in result["items"])
            self.assertEqual(sum(r["no_answer_baseline"] for r in result["subsets"]), no_answers)


if __name__ == "__main__":
    unittest.main()
