"""Capture: shapes per reduction, left/right padding, equality with output_hidden_states, gradients."""

from __future__ import annotations

import unittest

import torch

from models.capture import capture, capture_grads
from models.layers import get_adapter
from tests.models.tiny_models import ADDITIVE, ARCHITECTURES, HIDDEN, N_LAYERS, all_hooks, padded_batch, tiny_model

LENGTHS = (7, 5, 3)


def last_real(mask: torch.Tensor) -> torch.Tensor:
    return (mask * torch.arange(mask.shape[1])).argmax(-1)


class CaptureArchitecturesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.models = {arch: tiny_model(arch) for arch in ARCHITECTURES}

    def test_block_outputs_equal_hidden_states_shifted_by_one(self) -> None:
        # hidden_states[0] is the embedding, hidden_states[i + 1] our layer i;
        # transformers puts the final norm on the last entry.
        for arch, model in self.models.items():
            for side in ("left", "right"):
                with self.subTest(arch=arch, padding=side):
                    ids, mask = padded_batch(side, LENGTHS)
                    with torch.no_grad(), capture(model, ["embed", *range(N_LAYERS)], reduction="all") as cap:
                        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                    hs = out.hidden_states
                    self.assertEqual(len(hs), N_LAYERS + 1)
                    torch.testing.assert_close(cap["embed"], hs[0], rtol=0, atol=0)
                    for i in range(N_LAYERS - 1):
                        torch.testing.assert_close(cap.values[i], hs[i + 1], rtol=0, atol=0)
                    norm = get_adapter(model).final_norm(model)
                    torch.testing.assert_close(norm(cap.values[N_LAYERS - 1]), hs[-1], rtol=1e-6, atol=1e-6)

    def test_reduction_shapes_and_values_with_left_and_right_padding(self) -> None:
        for arch, model in self.models.items():
            for side in ("left", "right"):
                with self.subTest(arch=arch, padding=side):
                    ids, mask = padded_batch(side, LENGTHS)
                    batch, width = ids.shape
                    results = {}
                    for reduction in ("last", "mean", "all", [0, -1]):
                        with torch.no_grad(), capture(model, "all", reduction=reduction) as cap:
                            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                        results[str(reduction)] = cap
                    hs = out.hidden_states
                    rows = torch.arange(batch)
                    last = last_real(mask)
                    if side == "left":
                        self.assertTrue(torch.equal(last, torch.full((batch,), width - 1)))
                    for i in range(N_LAYERS - 1):  # the last entry of hs is normed
                        h = hs[i + 1]
                        self.assertEqual(results["last"].values[i].shape, (batch, HIDDEN))
                        torch.testing.assert_close(results["last"].values[i], h[rows, last])
                        w = mask.unsqueeze(-1).float()
                        torch.testing.assert_close(results["mean"].values[i], (h * w).sum(1) / w.sum(1))
                        self.assertEqual(results["all"].values[i].shape, (batch, width, HIDDEN))
                        self.assertEqual(results["[0, -1]"].values[i].shape, (batch, 2, HIDDEN))
                        torch.testing.assert_close(results["[0, -1]"].values[i], h[:, [0, width - 1]])
                    self.assertEqual(results["last"].stack().shape, (N_LAYERS, batch, HIDDEN))

    def test_attention_and_mlp_points_add_up_to_the_block(self) -> None:
        for arch in sorted(ADDITIVE):
            model = self.models[arch]
            with self.subTest(arch=arch):
                ids, mask = padded_batch("right", LENGTHS)
                caps = {}
                with torch.no_grad():
                    with capture(model, "all", "pre", "all") as caps["pre"], \
                            capture(model, "all", "attn_out", "all") as caps["attn"], \
                            capture(model, "all", "mlp_out", "all") as caps["mlp"], \
                            capture(model, "all", "resid_post", "all") as caps["post"]:
                        model(input_ids=ids, attention_mask=mask)
                for i in range(N_LAYERS):
                    total = caps["pre"].values[i] + caps["attn"].values[i] + caps["mlp"].values[i]
                    torch.testing.assert_close(caps["post"].values[i], total, rtol=1e-5, atol=1e-5)
                    if i:
                        torch.testing.assert_close(caps["pre"].values[i], caps["post"].values[i - 1], rtol=0, atol=0)


class CaptureBehaviourTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.model = tiny_model("llama")

    def test_mask_from_the_context_and_pad_fallback(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)
        with torch.no_grad():
            with capture(self.model, [1], reduction="last", attention_mask=mask) as given:
                self.model(input_ids=ids)
            # no mask anywhere: trailing pad tokens (config.pad_token_id = 0) are padding
            with capture(self.model, [1], reduction="last") as from_ids:
                self.model(input_ids=ids)
            with capture(self.model, [1], reduction="all") as full:
                self.model(input_ids=ids)
        expected = full.values[1][torch.arange(3), last_real(mask)]
        torch.testing.assert_close(given.values[1], expected)
        torch.testing.assert_close(from_ids.values[1], expected)

    def test_memory_does_not_grow_with_sequence_length_for_last(self) -> None:
        ids = torch.randint(3, 60, (2, 40))
        with torch.no_grad(), capture(self.model, "all", reduction="last") as cap:
            self.model(input_ids=ids)
        self.assertEqual(sum(v.numel() for v in cap.values.values()), N_LAYERS * 2 * HIDDEN)

    def test_hooks_removed_and_values_detached_and_device_option(self) -> None:
        before = all_hooks(self.model)
        ids, mask = padded_batch("left", LENGTHS)
        with capture(self.model, [0, 2], reduction="mean", device="cpu", dtype=torch.float64) as cap:
            self.model(input_ids=ids, attention_mask=mask)
        self.assertEqual(all_hooks(self.model), before)
        self.assertFalse(cap.values[0].requires_grad)
        self.assertEqual(cap.values[2].dtype, torch.float64)
        with self.assertRaises(RuntimeError):
            with capture(self.model, [0]):
                raise RuntimeError("boom")
        self.assertEqual(all_hooks(self.model), before)

    def test_history_keeps_every_forward_of_generate(self) -> None:
        ids, mask = padded_batch("left", (4, 4))
        with torch.no_grad(), capture(self.model, [1], reduction="last", history=True) as cap:
            self.model.generate(ids, attention_mask=mask, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        self.assertEqual(len(cap.history[1]), 3)  # prefill + 2 decode steps

    def test_bad_arguments(self) -> None:
        with self.assertRaisesRegex(ValueError, "reduction"):
            capture(self.model, [0], reduction="max")
        with self.assertRaisesRegex(ValueError, "hook point"):
            capture(self.model, [0], point="qkv")


class CaptureGradsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.model = tiny_model("gpt2")

    def _reference(self, ids, mask, frozen: bool):
        for p in self.model.parameters():
            p.requires_grad_(not frozen)
        try:
            with capture_grads(self.model, "all", reduction="all") as full, \
                    capture_grads(self.model, ["embed", 0, 1], reduction="last") as last:
                out = self.model(input_ids=ids, attention_mask=mask, labels=ids, output_hidden_states=True)
                hs = out.hidden_states
                grads = torch.autograd.grad(out.loss, [hs[0], hs[1], hs[2]], retain_graph=True)
                out.loss.backward()
        finally:
            for p in self.model.parameters():
                p.requires_grad_(True)
        return full, last, grads

    def test_one_backward_gives_every_layer_gradient(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)
        for frozen in (False, True):
            with self.subTest(frozen=frozen):
                self.model.zero_grad()
                full, last, grads = self._reference(ids, mask, frozen)
                torch.testing.assert_close(full.values[0], grads[1])
                torch.testing.assert_close(full.values[1], grads[2])
                self.assertEqual(full.values[N_LAYERS - 1].shape, ids.shape + (HIDDEN,))
                rows, idx = torch.arange(3), last_real(mask)
                torch.testing.assert_close(last["embed"], grads[0][rows, idx])
                torch.testing.assert_close(last.values[1], grads[2][rows, idx])

    def test_callable_reduction_projects_activations_and_gradients(self) -> None:
        ids, mask = padded_batch("right", LENGTHS)
        basis = torch.randn(2, HIDDEN, generator=torch.Generator().manual_seed(0))
        self.model.zero_grad()
        with capture_grads(self.model, [0, 1], reduction="all") as full, \
                capture_grads(self.model, [0, 1], reduction=lambda t: t @ basis.T) as projected, \
                capture(self.model, [1], reduction=lambda t: t @ basis.T) as acts, \
                capture(self.model, [1], reduction="all") as reference:
            self.model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        for layer in (0, 1):
            self.assertEqual(projected.values[layer].shape, ids.shape + (2,))
            torch.testing.assert_close(projected.values[layer], full.values[layer] @ basis.T)
        torch.testing.assert_close(acts.values[1], reference.values[1] @ basis.T)


if __name__ == "__main__":
    unittest.main()
