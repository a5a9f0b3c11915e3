"""Steering: DESIGN.md's four formulas, positions, generate, hook hygiene."""

from __future__ import annotations

import unittest
from unittest import mock

import torch

from models import layers as layers_mod
from models.capture import capture
from models.layers import Layer
from models.steering import steer
from tests.models.tiny_models import HIDDEN, all_hooks, padded_batch, tiny_model

K = 1  # the steered layer
LENGTHS = (7, 5, 3)


def last_real(mask: torch.Tensor) -> torch.Tensor:
    return (mask * torch.arange(mask.shape[1])).argmax(-1)


class SteeringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.model = tiny_model("llama")
        g = torch.Generator().manual_seed(3)
        cls.direction = torch.randn(HIDDEN, generator=g) * 5
        cls.u = cls.direction / cls.direction.norm()

    def run_layers(self, ids, mask=None, **steering):
        """All block outputs ("all" tokens), with steering when asked."""
        with torch.no_grad():
            if steering:
                with steer(self.model, K, self.direction, **steering), \
                        capture(self.model, "all", reduction="all") as cap:
                    logits = self.model(input_ids=ids, attention_mask=mask).logits
            else:
                with capture(self.model, "all", reduction="all") as cap:
                    logits = self.model(input_ids=ids, attention_mask=mask).logits
        return cap.values, logits

    def test_addition_changes_layer_k_by_exactly_the_vector_on_chosen_positions(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)
        base, _ = self.run_layers(ids, mask)
        for positions in ("all", "last"):
            with self.subTest(positions=positions):
                steered, _ = self.run_layers(ids, mask, scale=4.0, positions=positions)
                for i in range(K):
                    torch.testing.assert_close(steered[i], base[i], rtol=0, atol=0)
                delta = steered[K] - base[K]
                chosen = torch.ones(ids.shape, dtype=torch.bool)
                if positions == "last":
                    chosen = torch.zeros(ids.shape, dtype=torch.bool)
                    chosen[torch.arange(3), last_real(mask)] = True
                torch.testing.assert_close(delta[chosen], (4.0 * self.u).expand(int(chosen.sum()), HIDDEN))
                self.assertEqual(float(delta[~chosen].abs().sum()), 0.0)
                self.assertFalse(torch.equal(steered[K + 1], base[K + 1]))

    def test_scale_zero_reproduces_logits_bit_for_bit(self) -> None:
        ids, mask = padded_batch("left", LENGTHS)
        _, base = self.run_layers(ids, mask)
        for mode, positions in (("addition", "all"), ("addition", "last"), ("amplification", "all")):
            with self.subTest(mode=mode, positions=positions):
                _, logits = self.run_layers(ids, mask, scale=0.0, mode=mode, positions=positions)
                self.assertTrue(torch.equal(logits, base))

    def test_ablation_removes_the_component(self) -> None:
        ids, mask = padded_batch("left", LENGTHS)
        base, _ = self.run_layers(ids, mask)
        steered, _ = self.run_layers(ids, mask, mode="ablation")
        self.assertGreater(float((base[K] @ self.u).abs().max()), 0.1)
        self.assertLess(float((steered[K] @ self.u).abs().max()), 1e-5)
        proj = (base[K] @ self.u).unsqueeze(-1)
        torch.testing.assert_close(steered[K], base[K] - proj * self.u)

    def test_amplification_formula(self) -> None:
        ids, mask = padded_batch("left", LENGTHS)
        base, _ = self.run_layers(ids, mask)
        steered, _ = self.run_layers(ids, mask, mode="amplification", scale=2.5)
        proj = (base[K] @ self.u).unsqueeze(-1)
        torch.testing.assert_close(steered[K], base[K] + 2.5 * proj * self.u)

    def test_overall_magnitude_formula(self) -> None:
        ids, mask = padded_batch("left", LENGTHS)
        base, _ = self.run_layers(ids, mask)
        mean = torch.randn(HIDDEN)
        steered, _ = self.run_layers(ids, mask, scale=0.5, normalization="overall_magnitude",
                                     overall_mean={K: mean})
        expected = (0.5 * mean.norm() * self.u).expand_as(base[K])
        torch.testing.assert_close(steered[K] - base[K], expected)
        with self.assertRaisesRegex(ValueError, "overall_mean"):
            steer(self.model, K, self.direction, normalization="overall_magnitude")

    def test_last_with_right_padding_and_no_mask_uses_the_pad_tokens(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)  # pad id 0 = config.pad_token_id, like lm-eval batches
        base, _ = self.run_layers(ids)
        steered, _ = self.run_layers(ids, scale=3.0, positions="last")
        delta = steered[K] - base[K]
        chosen = torch.zeros(ids.shape, dtype=torch.bool)
        chosen[torch.arange(3), last_real(mask)] = True
        torch.testing.assert_close(delta[chosen], (3.0 * self.u).expand(3, HIDDEN))
        self.assertEqual(float(delta[~chosen].abs().max()), 0.0)
        # an explicit pad id (lm-eval pads with 0 whatever the tokenizer says) works too
        with torch.no_grad(), steer(self.model, K, self.direction, scale=3.0, positions="last", pad_token_id=0), \
                capture(self.model, K, reduction="all") as cap:
            self.model(input_ids=ids)
        torch.testing.assert_close(cap.values[K], steered[K], rtol=0, atol=0)

    def test_generated_only_with_and_without_cache(self) -> None:
        ids = torch.randint(3, 60, (2, 5), generator=torch.Generator().manual_seed(5))
        prompt = ids.shape[1]
        for use_cache in (True, False):
            with self.subTest(use_cache=use_cache):
                with torch.no_grad(), steer(self.model, K, self.direction, scale=6.0, positions="generated"), \
                        capture(self.model, K, reduction="all", history=True) as cap:
                    out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                              min_new_tokens=4, do_sample=False, use_cache=use_cache)
                # layer K's own output depends only on the tokens: recompute it unsteered
                with torch.no_grad(), capture(self.model, K, reduction="all") as plain:
                    self.model(input_ids=out)
                steered = torch.cat(cap.history[K], dim=1) if use_cache else cap.history[K][-1]
                seen = steered.shape[1]
                # a cached step and a full forward differ by float rounding only
                delta = steered - plain.values[K][:, :seen]
                torch.testing.assert_close(delta[:, :prompt], torch.zeros(2, prompt, HIDDEN), rtol=0, atol=1e-5)
                torch.testing.assert_close(delta[:, prompt:], (6.0 * self.u).expand(2, seen - prompt, HIDDEN),
                                           rtol=0, atol=1e-5)
                self.assertEqual(len(cap.history[K]), 4)

    def test_hooks_are_removed_also_after_an_exception(self) -> None:
        fresh = tiny_model("gpt2")
        self.assertTrue(all(not h and not p for h, p in all_hooks(fresh).values()))
        ids, mask = padded_batch("left", LENGTHS)
        with steer(fresh, [0, 2], self.direction, point="mlp", positions="last"):
            fresh(input_ids=ids, attention_mask=mask)
        self.assertTrue(all(not h and not p for h, p in all_hooks(fresh).values()))
        with self.assertRaisesRegex(RuntimeError, "inside"):
            with steer(fresh, 1, self.direction, point="pre"), capture(fresh, "all"):
                fresh(input_ids=ids, attention_mask=mask)
                raise RuntimeError("inside")
        self.assertTrue(all(not h and not p for h, p in all_hooks(fresh).values()))
        # transformers installs its own hidden-state recorders on first use; ours still all go
        fresh(input_ids=ids, output_hidden_states=True)
        before = all_hooks(fresh)
        with steer(fresh, 1, self.direction):
            fresh(input_ids=ids)
        self.assertEqual(all_hooks(fresh), before)

    def test_parameters_are_never_touched(self) -> None:
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        ids, mask = padded_batch("left", LENGTHS)
        with steer(self.model, "all", self.direction, mode="ablation"):
            self.model(input_ids=ids, attention_mask=mask)
        for k, v in self.model.state_dict().items():
            self.assertTrue(torch.equal(v, before[k]), k)

    def test_points_pre_attn_mlp(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)
        with torch.no_grad():
            with capture(self.model, K, "pre", "all") as base_pre, capture(self.model, K, "mlp", "all") as base_mlp:
                self.model(input_ids=ids, attention_mask=mask)
            for point, cap_point, base in (("pre", "pre", base_pre), ("mlp", "mlp", base_mlp)):
                with steer(self.model, K, self.direction, point=point, scale=2.0), \
                        capture(self.model, K, cap_point, "all") as cap:
                    self.model(input_ids=ids, attention_mask=mask)
                torch.testing.assert_close(cap.values[K] - base.values[K], (2.0 * self.u).expand_as(base.values[K]))

    def test_capture_sees_steering_whichever_context_is_outer(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)
        inner, _ = self.run_layers(ids, mask, scale=2.0)
        with torch.no_grad(), capture(self.model, K, reduction="all") as cap, \
                steer(self.model, K, self.direction, scale=2.0):
            self.model(input_ids=ids, attention_mask=mask)
        torch.testing.assert_close(cap.values[K], inner[K], rtol=0, atol=0)

    def test_per_layer_directions_and_scales(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)
        base, _ = self.run_layers(ids, mask)
        d0, d2 = torch.randn(HIDDEN), torch.randn(HIDDEN)
        with torch.no_grad(), steer(self.model, None, {0: d0, "blocks.2": d2}, scale={0: 1.0, 2: -2.0}), \
                capture(self.model, [0, 2], reduction="all") as cap:
            self.model(input_ids=ids, attention_mask=mask)
        torch.testing.assert_close(cap.values[0] - base[0], (d0 / d0.norm()).expand_as(base[0]))
        # layer 2's input changed too, so compare against its own unsteered block output:
        self.assertFalse(torch.equal(cap.values[2], base[2]))

    def test_wrong_width_and_bad_arguments_are_clear_errors(self) -> None:
        with self.assertRaisesRegex(ValueError, r"width 17.*hidden size is 16"):
            steer(self.model, K, torch.randn(17))
        with self.assertRaisesRegex(ValueError, "mode"):
            steer(self.model, K, self.direction, mode="rotate")
        with self.assertRaisesRegex(ValueError, "positions"):
            steer(self.model, K, self.direction, positions="first")
        with self.assertRaisesRegex(ValueError, "norm"):
            steer(self.model, K, torch.zeros(HIDDEN))
        with self.assertRaisesRegex(ValueError, "overall_magnitude"):
            steer(self.model, K, self.direction, mode="ablation", normalization="overall_magnitude",
                  overall_mean=self.direction)


class SharedModule(torch.nn.Module):
    """A model that visits one block twice, like Huginn's recurrent core."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.core = torch.nn.Linear(4, 4)
        self.step = -1

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(input_ids)
        for step in range(2):
            self.step = step
            h = h + self.core(h)
        self.step = -1
        return h


class SharedAdapter:
    name = "shared"

    def matches(self, model) -> bool:
        return isinstance(model, SharedModule)

    def embedding(self, model):
        return model.emb

    def layers(self, model):
        return [Layer(s, f"core@step{s}", model.core, None, None, alias=("core", 0, s),
                      active=lambda s=s: model.step == s) for s in range(2)]

    def final_norm(self, model):
        return None


class ActiveLayersTest(unittest.TestCase):
    def test_hooks_act_only_on_the_active_visit(self) -> None:
        torch.manual_seed(0)
        model = SharedModule()
        ids = torch.tensor([[1, 2, 3]])
        with mock.patch.object(layers_mod, "plugin_adapters", return_value=[SharedAdapter()]):
            with torch.no_grad(), capture(model, [0, 1], reduction="all") as base:
                model(ids)
            direction = torch.tensor([1.0, 0.0, 0.0, 0.0])
            with torch.no_grad(), steer(model, ("core", 0, 1), direction, scale=2.0), \
                    capture(model, [0, 1], reduction="all") as cap:
                model(ids)
        torch.testing.assert_close(cap.values[0], base.values[0], rtol=0, atol=0)
        torch.testing.assert_close(cap.values[1] - base.values[1], (2.0 * direction).expand(1, 3, 4))
        self.assertEqual(len(model.core._forward_hooks), 0)


class HuginnIntegrationTest(unittest.TestCase):
    """Capture and steering on the shared core blocks of our Huginn model, by flat index and alias."""

    def test_steering_one_recurrence_step(self) -> None:
        try:
            from models.huginn import HuginnConfig, HuginnForCausalLM
        except ImportError:
            self.skipTest("models.huginn not available")
        torch.manual_seed(0)
        config = HuginnConfig(n_embd=32, num_attention_heads=2, vocab_size=128, intermediate_size=48,
                              n_layers_in_prelude=1, n_layers_in_recurrent_block=2, n_layers_in_coda=1,
                              mean_recurrence=3)
        model = HuginnForCausalLM(config).eval()
        ids = torch.randint(3, 120, (2, 6), generator=torch.Generator().manual_seed(0))
        direction = torch.randn(32)
        u = direction / direction.norm()
        with torch.no_grad():
            with capture(model, "all", reduction="all") as base:
                out = model(input_ids=ids, init_scale=0.0, output_hidden_states=True)
            n = len(base.layers)
            self.assertEqual(n, 1 + 2 * 3 + 1)
            for i in range(n - 1):
                torch.testing.assert_close(base.values[i], out.hidden_states[i + 1], rtol=0, atol=0)
            with steer(model, ("core", 0, 1), direction, scale=3.0), \
                    capture(model, "all", reduction="all") as cap:
                model(input_ids=ids, init_scale=0.0)
        k = 1 + 2 * 1 + 0  # prelude, then step 0's two core blocks
        self.assertEqual(cap.layers[k].alias, ("core", 0, 1))
        for i in range(k):
            torch.testing.assert_close(cap.values[i], base.values[i], rtol=0, atol=0)
        torch.testing.assert_close(cap.values[k] - base.values[k], (3.0 * u).expand(2, 6, 32))
        self.assertFalse(torch.equal(cap.values[k + 1], base.values[k + 1]))
        self.assertTrue(all(not m._forward_pre_hooks for m in model.modules()))


if __name__ == "__main__":
    unittest.main()
