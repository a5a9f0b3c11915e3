"""steering_per_layer: the steering effect per layer (planted layer found, first-order estimate, resume, errors)."""

from __future__ import annotations

import csv
import json
import shutil
import unittest
from pathlib import Path
from unittest import mock

import torch

from plugins.steering_per_layer import effect
from plugins.steering_per_layer.effect_jobs import effect_jobs
from plugins.steering_per_layer.interventions import InterventionError
from runner.workspace import Workspace
from tests.plugins.directions_support import WorkspaceCase, context, failing, tiny_llama
from tests.support import REPO_ROOT, slow

EXAMPLE = REPO_ROOT / "workspace.example"
PLANTED, RANDOM, LAYER = "tiny-planted", "tiny-random", 1  # 3-layer Llamas; planted direction at layer 1
DIRECTIONS = "experiments/candidate_directions/{model}/mmlu-pro-3000samples/FIRST_ANSWER_TOKEN.safetensors"
JOB = "analyze_steering_effect_per_layer"


def sub_context(ws: Workspace, job_name: str = JOB, **overrides):
    job = next(j for j in effect_jobs() if j.name == job_name)
    params = job.defaults() | {"bootstrap": 50} | overrides
    sub = job.build_subjobs(params)[0]
    return context(ws, sub.function, {**params, **sub.params}, sub.reads, sub.writes, name=job_name)


def assert_first_order(case: unittest.TestCase, values: dict, key: str, tolerance: float = 0.05) -> None:
    """Per item, the estimate equals the measured Δ log p up to ``tolerance`` of the largest change."""
    measured, estimate = torch.tensor(values["delta_logprob"]), torch.tensor(values["first_order"])
    scale = float(measured.abs().max())
    case.assertGreater(scale, 1e-6, key)
    case.assertLess(float((estimate - measured).abs().max()), tolerance * scale, key)


def run(ctx) -> dict:
    effect.analyze_steering_effect(ctx)
    return json.loads(ctx.writes[0].read_text())


def write_directions_for(ws: Workspace, model: str, directions: dict[int, torch.Tensor]) -> None:
    from plugins.common.directions_format import complete, write_directions

    g = torch.Generator().manual_seed(1)
    per_layer = {}
    for k, direction in directions.items():
        mean = torch.randn(direction.shape[0], generator=g).double()
        per_layer[k] = {"direction": direction.double(), "overall_mean": mean, **complete(direction.double(), mean)}
    write_directions(ws.path(DIRECTIONS.format(model=model)), per_layer,
                     [{"key": k, "name": f"blocks.{k}"} for k in directions],
                     {"kind": "candidate_directions", "model": model, "hidden_size": 16, "mode": "FIRST_ANSWER_TOKEN"})


def planted_workspace(root: Path) -> Workspace:
    """The example's questions, every answer set to (A), and two untrained 3-layer Llamas (example tokenizer).

    ``tiny-planted``: block outputs scaled down 20x, so the answer position's
    residual stream is nearly the embedding of its token "(". Layer 1's
    direction is the unembedding of "A" (the correct letter gains); layers 0
    and 2 point along that embedding, which the final RMSNorm all but cancels.
    ``tiny-random``: blocks as initialised, random directions.
    """
    from models.loading import load_tokenizer
    from models.scoring import encode_contexts
    from plugins.steering_per_layer.evaluate import ANSWER_PREFIX

    entries = json.loads((EXAMPLE / "datasets/lirefs/mmlu-pro-3000samples.json").read_text())
    for entry in entries:
        entry.update(answer="A", answer_index=0)
    (root / "datasets" / "lirefs").mkdir(parents=True)
    (root / "datasets/lirefs/mmlu-pro-3000samples.json").write_text(json.dumps(entries))
    tokenizer = load_tokenizer(EXAMPLE / "transformers/tiny-llama-3-8b")
    ws = Workspace.open(root)
    planted = tiny_llama(len(tokenizer), seed=3)
    with torch.no_grad():
        for block in planted.model.layers:
            block.self_attn.o_proj.weight.mul_(0.05)
            block.mlp.down_proj.weight.mul_(0.05)
    random_model = tiny_llama(len(tokenizer), seed=4)
    for name, model in ((PLANTED, planted), (RANDOM, random_model)):
        model.save_pretrained(root / "transformers" / name)
        tokenizer.save_pretrained(root / "transformers" / name)
    last = encode_contexts(tokenizer, ["Q: x" + ANSWER_PREFIX])[0][-1]
    null = planted.get_input_embeddings().weight[last].detach()
    push = planted.get_output_embeddings().weight[tokenizer.convert_tokens_to_ids("A")].detach()
    push = push - (push @ null) / (null @ null) * null
    write_directions_for(ws, PLANTED, {0: null, LAYER: push, 2: null})
    write_directions_for(ws, RANDOM, {k: torch.randn(16, generator=torch.Generator().manual_seed(k)) for k in range(3)})
    return ws


class TestPlantedDirection(WorkspaceCase):
    @classmethod
    def build_workspace(cls, root: Path) -> Workspace:
        return planted_workspace(root)

    def ctx(self, model: str = PLANTED, **overrides):
        return sub_context(self.ws, model=model, sample_size=24, **overrides)

    @slow
    def test_planted_layer_has_the_largest_effect_and_the_estimate_ranks_it_first(self):
        ctx = self.ctx()
        result = run(ctx)
        for subset, agree in result["agreement"].items():
            self.assertEqual(agree["top_layer_kl"], LAYER, subset)
            self.assertEqual(agree["top_layer_abs_delta_logprob"], LAYER, subset)
            self.assertEqual(agree["top_layer_abs_first_order"], LAYER, subset)
        planted = [r for r in result["rows"] if r["layer"] == LAYER]
        for row in planted:  # the correct letter gains; the answer changes to (A)
            self.assertGreater(row["delta_logprob"], 1.0)
            self.assertGreater(row["first_order"], 1.0)
            self.assertEqual(row["accuracy_steered"], 1.0)
            self.assertGreater(row["accuracy_change"], 0.5)
        others = [r for r in result["rows"] if r["layer"] != LAYER]
        self.assertLess(max(r["kl"] for r in others), 0.1 * min(r["kl"] for r in planted))
        rows = list(csv.DictReader(ctx.writes[1].read_text().splitlines()))
        self.assertEqual([(int(r["layer"]), r["subset"]) for r in rows],
                         [(k, s) for k in range(3) for s in ("reasoning", "memorizing")])
        self.assertIn("spearman(first-order, Δlogp)", ctx.writes[2].read_text())
        self.assertEqual(ctx.writes[3].read_bytes()[:4], b"\x89PNG")

    @slow
    def test_first_order_estimate_matches_small_interventions(self):
        for overrides in ({"token_modification_mode": "ALL_TOKENS", "scale": 0.005},
                          {"token_modification_mode": "LAST_TOKEN", "scale": -0.005},
                          {"modification_mode": "FEATURE_AMPLIFICATION", "scale": 0.005},
                          {"direction_normalization_mode": "SCALE_WITH_OVERALL_MAGNITUDE", "scale": 0.002},
                          {"modification_mode": "FEATURE_AMPLIFICATION", "scale": 0.002,
                           "direction_normalization_mode": "SCALE_WITH_OVERALL_MAGNITUDE"},
                          {"hook_point": "pre+attn+mlp", "direction_layer_offset": -1, "layer_indices": [1, 2],
                           "scale": 0.005}):
            with self.subTest(**overrides):
                result = run(self.ctx(RANDOM, **overrides))
                for key, values in result["per_item"].items():
                    assert_first_order(self, values, key)

    @slow
    def test_killed_run_resumes_at_the_next_layer(self):
        ctx = self.ctx(RANDOM, scale=2.0, token_modification_mode="ALL_TOKENS")
        with self.assertRaises(KeyboardInterrupt):
            effect.analyze_steering_effect(failing(ctx, fail_after=1))  # killed after layer 0
        with mock.patch.object(effect, "measure_layer", wraps=effect.measure_layer) as measure:
            resumed = run(ctx)
        self.assertEqual([c.args[4] for c in measure.call_args_list], [1, 2])
        ctx.checkpoint.clear()
        fresh = run(ctx)
        self.assertEqual(resumed["per_item"], fresh["per_item"])


class TestHuginnAndDiagnostics(WorkspaceCase):
    @classmethod
    def build_workspace(cls, root: Path) -> Workspace:
        """The parts of the example workspace the job reads (tiny Huginn, its candidate directions)."""
        for part in ("latentrun.toml", "transformers/tiny-huginn-0125", "transformers/tiny-llama-3-8b",
                     "datasets/lirefs/mmlu-pro-3000samples.json", "experiments/candidate_directions/huginn-0125"):
            source, target = EXAMPLE / part, root / part
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
        return Workspace.open(root)

    @slow
    def test_huginn_scale_zero_is_exactly_no_effect_and_gradients_cross_the_recurrence(self):
        ctx = sub_context(self.ws, "mmlu_pro_analyze_steering_effect_per_layer_all_tokens", sample_size=8,
                          layer_indices=[1, 5, 9], scale=0.0)
        result = run(ctx)
        for values in result["per_item"].values():
            self.assertEqual(set(values["kl"]) | set(values["delta_logprob"]) | set(values["first_order"]), {0.0})
        for row in result["rows"]:
            self.assertEqual((row["accuracy_change"], row["kl"], row["delta_logprob"]), (0.0, 0.0, 0.0))
        result = run(sub_context(self.ws, "mmlu_pro_analyze_steering_effect_per_layer_all_tokens", sample_size=8,
                                 layer_indices=[1, 5, 9], scale=0.05))
        self.assertEqual([x["name"] for x in result["layers"]], ["core.0@step0", "core.0@step2", "coda.0"])
        for key, values in result["per_item"].items():  # core.0@step0 sits before four recurrence steps
            assert_first_order(self, values, key, tolerance=0.1)

    def test_embedding_cosine_is_one_for_a_token_embedding(self):
        from models.loading import load_tokenizer

        tokenizer = load_tokenizer(EXAMPLE / "transformers/tiny-llama-3-8b")
        model = tiny_llama(len(tokenizer), seed=1)  # untied: the unembedding is reported too
        embed, head = model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()
        units = {0: 3.0 * embed[37], 1: head[40] / head[40].norm()}
        found = effect.embedding_diagnostic(model, tokenizer, {"unit_direction": units}, [0, 1])
        self.assertAlmostEqual(found[0]["cos_embedding"], 1.0, places=6)
        self.assertEqual((found[0]["cos_embedding_token_id"], found[0]["cos_embedding_token"]), (37, "B"))
        self.assertAlmostEqual(found[1]["cos_unembedding"], 1.0, places=6)
        self.assertEqual(found[1]["cos_unembedding_token_id"], 40)
        self.assertLess(found[1]["cos_embedding"], 0.99)
        model.lm_head.weight = model.get_input_embeddings().weight  # tie them
        tied = effect.embedding_diagnostic(model, tokenizer, {"unit_direction": units}, [0])
        self.assertTrue(tied[0]["tied_embeddings"])
        self.assertNotIn("cos_unembedding", tied[0])

    def test_errors_before_the_model_loads(self):
        with mock.patch("plugins.common.extraction.load", side_effect=AssertionError("model loaded")):
            with self.assertRaisesRegex(InterventionError, r"\[99\] out of range.*0\.\.9"):
                effect.analyze_steering_effect(sub_context(self.ws, "mmlu_pro_analyze_steering_effect_per_layer",
                                                           layer_indices=[1, 99]))
            llama = "experiments/candidate_directions/Meta-Llama-3-8B"
            shutil.copytree(self.ws.path("experiments/candidate_directions/huginn-0125"), self.ws.path(llama))
            try:
                with self.assertRaisesRegex(InterventionError, "made for model 'huginn-0125'"):
                    effect.analyze_steering_effect(
                        sub_context(self.ws, "mmlu_pro_meta-llama-3-8b_analyze_steering_effect_per_layer"))
            finally:
                shutil.rmtree(self.ws.path(llama))
        job = next(j for j in effect_jobs() if j.name == JOB)
        for key, value, message in (("modification_mode", "FEATURE_SUBTRACTION", "modification_mode"),
                                    ("layer_indices", ["x"], "expected integers"),
                                    ("layer_indices", [3, 3], "twice")):
            with self.assertRaisesRegex(InterventionError, message):
                job.build_subjobs(job.defaults() | {key: value})
        self.assertEqual(job.params["layer_indices"].parse("layer_indices", "3,5"), ["3", "5"])
        self.assertEqual(effect.requested_layers({"layer_indices": ["3", "5"]}), [3, 5])


class TestPresets(unittest.TestCase):
    def test_the_seeds_names_exist_and_do_what_they_say(self):
        expected = {  # name: (model, token mode)
            "analyze_steering_effect_per_layer": ("huginn-0125", "LAST_TOKEN"),
            "analyze_steering_effect_per_layer_model_name_huginn-0125": ("huginn-0125", "LAST_TOKEN"),
            "analyze_steering_effect_per_layer_model_name_Meta-Llama-3-8B": ("Meta-Llama-3-8B", "LAST_TOKEN"),
            "mmlu_pro_analyze_steering_effect_per_layer": ("huginn-0125", "LAST_TOKEN"),
            "mmlu_pro_analyze_steering_effect_per_layer_all_tokens": ("huginn-0125", "ALL_TOKENS"),
            "mmlu_pro_meta-llama-3-8b_analyze_steering_effect_per_layer": ("Meta-Llama-3-8B", "LAST_TOKEN"),
            "mmlu_pro_meta-llama-3-8b_analyze_steering_effect_per_layer_all_tokens": ("Meta-Llama-3-8B", "ALL_TOKENS"),
        }
        from plugins.steering_per_layer import jobs

        found = {j.name: j for j in jobs()}
        for name, (model, tokens) in expected.items():
            defaults = found[name].defaults()
            self.assertEqual((defaults["model"], defaults["token_modification_mode"]), (model, tokens), name)
            self.assertEqual((defaults["layer_indices"], defaults["modification_mode"], defaults["hook_point"],
                              defaults["direction_normalization_mode"], defaults["scale"]),
                             ([], "FEATURE_ADDITION", "post", "UNIT_VECTOR", 1.0), name)
            sub = found[name].build_subjobs(defaults)[0]
            self.assertTrue(sub.writes[0].startswith("experiments/steering_effect_per_layer/{model}"))


if __name__ == "__main__":
    unittest.main()
