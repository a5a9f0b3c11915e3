"""save_hidden_states: in-hook reductions, padding, numbering, the sharded format, resume."""

from __future__ import annotations

import json
import unittest

import torch

from plugins.common.extraction import Prompt, encode, load, reduce_batches, save_hidden_states
from plugins.common.hidden_states import DATASET_FILE, HIDDEN_STATES_DIR, SIDECAR, open_hidden_states, variant
from runner.atomic import PARTIAL_SUFFIX
from tests.plugins.directions_support import HUGINN, LLAMA, WorkspaceCase, context, failing, params_for
from tests.support import limit_torch_threads, restore_torch_threads, slow

setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads


class Base(WorkspaceCase):
    def model(self, name: str, **params):
        return load(self.ws, params_for(model=name, dtype="float32", **params), "cpu")


class TestReductions(Base):
    TEXTS = ["What is the capital of Zorb ?", "Compute 3 plus 4 then times 2 . Then add 1 . Then add 1 .",
             "Recall it ."]

    def reduce(self, model, tok, texts, mode, side, batch_size, init_scale=1.0):
        prompts = encode([Prompt(i, t, "reasoning") for i, t in enumerate(texts)], tok)
        out = {}
        for batch, values in reduce_batches(model, tok, prompts, mode, batch_size, padding_side=side,
                                            init_scale=init_scale, seed=3):
            for row, prompt in enumerate(batch):
                out[prompt.index] = {k: v[row] for k, v in values.items()}
        return out

    def test_all_tokens_ignores_padding(self):
        """The same prompt alone and inside a padded batch gives the same mean (both sides, both models)."""
        for name in (LLAMA, HUGINN):
            model, tok = self.model(name)
            alone = self.reduce(model, tok, self.TEXTS[:1], "ALL_TOKENS", "left", 1)[0]
            for side in ("left", "right"):
                with self.subTest(model=name, side=side):
                    batched = self.reduce(model, tok, self.TEXTS, "ALL_TOKENS", side, 3)[0]
                    for key, value in alone.items():
                        torch.testing.assert_close(batched[key], value, rtol=1e-4, atol=1e-5)

    def test_first_answer_token_is_the_last_prompt_token_at_every_layer(self):
        model, tok = self.model(LLAMA)
        ids = tok(self.TEXTS[0], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            reference = model(ids, output_hidden_states=True).hidden_states
        for side in ("left", "right"):
            got = self.reduce(model, tok, self.TEXTS, "FIRST_ANSWER_TOKEN", side, 3)[0]
            torch.testing.assert_close(got["embed"], reference[0][0, -1])
            for i in range(len(reference) - 2):  # the last entry has the final norm applied
                torch.testing.assert_close(got[i], reference[i + 1][0, -1], rtol=1e-4, atol=1e-5)

    def test_huginn_state_is_per_prompt_and_seeded(self):
        model, tok = self.model(HUGINN)
        a = self.reduce(model, tok, self.TEXTS, "FIRST_ANSWER_TOKEN", "left", 3)
        b = self.reduce(model, tok, self.TEXTS, "FIRST_ANSWER_TOKEN", "right", 1)
        for index in a:
            torch.testing.assert_close(a[index][4], b[index][4], rtol=1e-4, atol=1e-5)
        zero = self.reduce(model, tok, self.TEXTS, "FIRST_ANSWER_TOKEN", "left", 3, init_scale=0.0)
        self.assertFalse(torch.allclose(zero[0][1], a[0][1]), "the random initial state is used")


class TestSavedFolder(Base):
    def run_job(self, params, ctx_wrapper=None):
        ctx = context(self.ws, "plugins.common.extraction:save_hidden_states", params, [DATASET_FILE],
                      [HIDDEN_STATES_DIR], name="save")
        if ctx_wrapper:
            ctx = ctx_wrapper(ctx)
        save_hidden_states(ctx)
        return ctx

    def test_format_sidecar_and_huginn_numbering(self):
        params = params_for(model=HUGINN, num_steps=2, batch_size=5, shard_size=7, dtype="float32")
        self.assertEqual(variant(params), "@num_steps=2,dtype=float32")
        ctx = self.run_job(params)
        target = ctx.writes[0]
        self.assertTrue(str(target).endswith("hidden_states/tiny-huginn/mmlu-pro-3000samples/"
                                             "FIRST_ANSWER_TOKEN@num_steps=2,dtype=float32"))
        hs = open_hidden_states(target)
        # 1 prelude + 2 core blocks x 2 steps + 1 coda = 6 layers, plus embed
        self.assertEqual(hs.layers, ["embed", 0, 1, 2, 3, 4, 5])
        self.assertEqual(hs.layer_names[1:], ["prelude.0", "core.0@step0", "core.1@step0", "core.0@step1",
                                              "core.1@step1", "coda.0"])
        data = json.loads((self.ws.root / "datasets/lirefs/mmlu-pro-3000samples.json").read_text())
        self.assertEqual(len(hs), len(data))
        self.assertEqual(sorted(hs.indices), list(range(len(data))))
        for row, index in enumerate(hs.indices):
            expected = "reasoning" if data[index]["memory_reason_score"] > 0.5 else "memorizing"
            self.assertEqual(hs.labels[row], expected)
        self.assertEqual(len(hs.meta["prompt_sha256"]), len(data))
        self.assertEqual([s["rows"] for s in hs.meta["shards"]], [7, 7, 7, 3])
        self.assertEqual(hs.meta["num_steps"], 2)
        self.assertEqual(tuple(hs.layer(3).shape), (len(data), 16))
        self.assertEqual(hs.accumulator().count, len(data))

    @slow
    def test_two_processes_write_the_same_folder_as_one(self):
        params = params_for(model=HUGINN, batch_size=3, shard_size=5, dtype="float32")
        one = open_hidden_states(self.run_job(params).writes[0])
        one_layers = {key: one.layer(key).clone() for key in one.layers}
        ctx = context(self.ws, "plugins.common.extraction:save_hidden_states", {**params, "num_processes": 2},
                      [DATASET_FILE], [HIDDEN_STATES_DIR], name="parallel")
        save_hidden_states(ctx)
        two = open_hidden_states(ctx.writes[0])
        self.assertEqual((two.indices, two.labels, two.layer_names), (one.indices, one.labels, one.layer_names))
        self.assertEqual(two.meta["shards"], one.meta["shards"])
        for key in one.layers:
            torch.testing.assert_close(two.layer(key), one_layers[key], rtol=1e-5, atol=1e-6)

    def test_killed_run_leaves_nothing_and_resumes_from_its_shards(self):
        params = params_for(model=LLAMA, batch_size=2, shard_size=4, dtype="float32", mode="ALL_TOKENS")
        with self.assertRaises(KeyboardInterrupt):
            self.run_job(params, lambda ctx: failing(ctx, 5))  # dies in the second shard
        ctx = context(self.ws, "plugins.common.extraction:save_hidden_states", params, [DATASET_FILE],
                      [HIDDEN_STATES_DIR], name="save")
        target = ctx.writes[0]
        self.assertFalse(target.exists())
        self.assertFalse(target.parent.exists() and any(p.name.endswith(PARTIAL_SUFFIX)
                                                        for p in target.parent.iterdir()))
        self.assertEqual(sorted(p.name for p in ctx.checkpoint.folder.glob("shard-*.safetensors")),
                         ["shard-00000.safetensors", "shard-00001.safetensors"])
        with self.assertLogs("latentrun", "INFO") as logs:
            save_hidden_states(ctx)
        self.assertTrue(any("resuming: 2 of" in line for line in logs.output))
        resumed = open_hidden_states(target)
        ctx.checkpoint.clear()
        fresh_ctx = context(self.ws, "plugins.common.extraction:save_hidden_states",
                            {**params, "batch_size": 5}, [DATASET_FILE], [HIDDEN_STATES_DIR], name="fresh")
        save_hidden_states(fresh_ctx)
        fresh = open_hidden_states(target)
        self.assertEqual(resumed.indices, fresh.indices)
        self.assertTrue((target / SIDECAR).exists())
        for key in fresh.layers:
            torch.testing.assert_close(resumed.layer(key), fresh.layer(key), rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    unittest.main()
