"""The shared continuation scorer against hand-computed log-probabilities on tiny in-memory models."""

from __future__ import annotations

import unittest

import torch
from transformers import GPT2Config, LlamaConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from models.scoring import (
    encode_pair,
    next_token_logprobs,
    score_choices,
    score_choices_batched,
    score_continuations,
    score_continuations_detailed,
)
from models.training import train_tokenizer
from tests.support import limit_torch_threads, restore_torch_threads

CORPUS = [
    "The capital of France is Paris.",
    "The capital of Italy is Rome.",
    "Question: is the sky blue? Answer: yes",
    "Question: is grass red? Answer: no",
    "one two three four five six seven eight nine ten",
] * 4

CONTEXTS = ["The capital of France is", "Answer:", "Question: is the sky blue? Answer:", "one two", "The"]
CONTINUATIONS = [" Paris.", " yes", " no way", " three four five", " capital of Italy"]


def _tokenizer(add_bos: bool = True) -> PreTrainedTokenizerFast:
    return train_tokenizer(CORPUS, vocab_size=320, kind="bpe", add_bos=add_bos)


def _llama(vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def _gpt2(vocab: int) -> torch.nn.Module:
    # Learned absolute positions: left padding is only right if position_ids are.
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=1)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def _by_hand(model: torch.nn.Module, ctx: list[int], cont: list[int]) -> list[float]:
    """Per-token log-probs of ``cont`` from one unpadded forward of ``ctx + cont``."""
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return [logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)]


setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads

class ScoringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tok = _tokenizer()
        cls.models = {"llama": _llama(len(cls.tok)), "gpt2": _gpt2(len(cls.tok))}

    def test_matches_hand_computed_multi_token_sum(self) -> None:
        for name, model in self.models.items():
            got = score_continuations(model, self.tok, CONTEXTS, CONTINUATIONS, reduction="none", batch_size=3)
            for ctx_text, cont_text, per_token in zip(CONTEXTS, CONTINUATIONS, got):
                ctx, cont = encode_pair(self.tok, ctx_text, cont_text)
                self.assertEqual(ctx[0], self.tok.bos_token_id)
                want = _by_hand(model, ctx, cont)
                self.assertEqual(len(per_token), len(cont))
                for a, b in zip(per_token, want):
                    self.assertAlmostEqual(a, b, places=4, msg=f"{name}: {ctx_text!r}+{cont_text!r}")
            self.assertTrue(any(len(x) > 2 for x in got), "the fixture must include multi-token continuations")

    def test_batched_equals_unbatched_both_padding_sides(self) -> None:
        for name, model in self.models.items():
            one = score_continuations(model, self.tok, CONTEXTS, CONTINUATIONS, batch_size=1)
            for side in ("right", "left"):
                many = score_continuations(model, self.tok, CONTEXTS, CONTINUATIONS, batch_size=4, padding_side=side)
                for a, b in zip(one, many):
                    self.assertAlmostEqual(a, b, places=4, msg=f"{name} {side}")

    def test_left_padding_without_position_ids_would_differ(self) -> None:
        """Guards the test above: on GPT-2, pads shift positions unless position_ids are passed."""
        model = self.models["gpt2"]
        ids = torch.tensor([[self.tok.pad_token_id] * 3 + [0, 5, 6, 7]])
        mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1]])
        with torch.no_grad():
            shifted = model(input_ids=ids, attention_mask=mask).logits[0, -1]
            plain = model(input_ids=ids[:, 3:]).logits[0, -1]
        self.assertFalse(torch.allclose(shifted, plain, atol=1e-4))

    def test_mean_is_sum_over_token_count(self) -> None:
        model = self.models["llama"]
        sums = score_continuations(model, self.tok, CONTEXTS, CONTINUATIONS, reduction="sum")
        means = score_continuations(model, self.tok, CONTEXTS, CONTINUATIONS, reduction="mean")
        for s, m, ctx, cont in zip(sums, means, CONTEXTS, CONTINUATIONS):
            n = len(encode_pair(self.tok, ctx, cont)[1])
            self.assertAlmostEqual(m, s / n, places=5)

    def test_leading_space_boundary(self) -> None:
        model = self.models["llama"]
        space_in_ctx = encode_pair(self.tok, "Answer: ", "Paris")
        space_in_cont = encode_pair(self.tok, "Answer:", " Paris")
        self.assertEqual(space_in_ctx, space_in_cont)
        self.assertEqual(space_in_cont[1], self.tok(" Paris", add_special_tokens=False)["input_ids"])
        a, b = score_continuations(model, self.tok, ["Answer: ", "Answer:"], ["Paris", " Paris"])
        self.assertAlmostEqual(a, b, places=5)
        # lm-eval's split agrees in the ordinary case.
        self.assertEqual(encode_pair(self.tok, "Answer: ", "Paris", split="lm_eval"), space_in_ctx)

    def test_token_straddling_boundary_goes_to_continuation(self) -> None:
        ctx, cont = encode_pair(self.tok, "The cap", "ital")
        whole = self.tok("The capital", add_special_tokens=False)["input_ids"]
        self.assertEqual(ctx[1:] + cont, whole)
        self.assertTrue(cont)
        self.assertIn("ital", self.tok.decode(cont))

    def test_bos_handling(self) -> None:
        model = self.models["llama"]
        ctx, _ = encode_pair(self.tok, "", "The")
        self.assertEqual(ctx, [self.tok.bos_token_id])
        no_bos_tok = _tokenizer(add_bos=False)
        ctx, _ = encode_pair(no_bos_tok, "Answer:", " yes")
        self.assertNotEqual(ctx[0], no_bos_tok.bos_token_id)  # tokenizer adds none, so neither do we
        ctx, _ = encode_pair(no_bos_tok, "", " yes")
        self.assertEqual(ctx, [no_bos_tok.bos_token_id])  # but an empty context still needs a start
        ctx, _ = encode_pair(no_bos_tok, "Answer:", " yes", add_bos=True)
        self.assertEqual(ctx[0], no_bos_tok.bos_token_id)
        bare = PreTrainedTokenizerFast(tokenizer_object=self.tok.backend_tokenizer)
        bare.backend_tokenizer.post_processor = None
        with self.assertRaisesRegex(ValueError, "empty context"):
            score_continuations(model, bare, [""], [" yes"])
        self.assertEqual(len(score_continuations(model, self.tok, [""], ["The capital"])), 1)

    def test_truncates_from_the_left(self) -> None:
        model = self.models["llama"]
        ctx, cont = encode_pair(self.tok, CONTEXTS[2], CONTINUATIONS[2])
        limit = 6
        [res] = score_continuations_detailed(model, self.tok, [CONTEXTS[2]], [CONTINUATIONS[2]], max_length=limit)
        self.assertTrue(res.truncated)
        kept = (ctx + cont)[:-1][-limit:]
        want = _by_hand(model, kept[: limit - len(cont) + 1], cont)
        for a, b in zip(res.token_logprobs, want):
            self.assertAlmostEqual(a, b, places=4)
        with self.assertRaisesRegex(ValueError, "does not fit"):
            score_continuations(model, self.tok, ["x"], [" one two three four five six"], max_length=2)

    def test_next_token_logprobs_is_last_position(self) -> None:
        for name, model in self.models.items():
            got_r = next_token_logprobs(model, self.tok, CONTEXTS, batch_size=3)
            got_l = next_token_logprobs(model, self.tok, CONTEXTS, batch_size=3, padding_side="left")
            self.assertEqual(tuple(got_r.shape), (len(CONTEXTS), model.config.vocab_size))
            for i, text in enumerate(CONTEXTS):
                ids = torch.tensor([self.tok(text)["input_ids"]])
                with torch.no_grad():
                    want = torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)
                torch.testing.assert_close(got_r[i], want, atol=1e-4, rtol=1e-4, msg=name)
                torch.testing.assert_close(got_l[i], want, atol=1e-4, rtol=1e-4, msg=name)

    def test_choices_and_greedy(self) -> None:
        model = self.models["llama"]
        scores = score_choices(model, self.tok, "Answer:", [" yes", " no", " Paris"])
        self.assertEqual(scores, score_continuations(model, self.tok, ["Answer:"] * 3, [" yes", " no", " Paris"]))
        batched = score_choices_batched(model, self.tok, ["Answer:", "The"], [[" yes", " no", " Paris"], [" capital"]])
        self.assertEqual([len(x) for x in batched], [3, 1])
        for a, b in zip(batched[0], scores):
            self.assertAlmostEqual(a, b, places=5)
        # is_greedy agrees with the next-token argmax for a one-token continuation.
        best = int(next_token_logprobs(model, self.tok, ["Answer:"])[0].argmax())
        [res] = score_continuations_detailed(model, self.tok, ["Answer:"], [self.tok.decode([best])])
        if res.token_ids == [best]:
            self.assertTrue(res.is_greedy)

    def test_no_grad_restores_mode_and_passes_forward_kwargs(self) -> None:
        inner = self.models["llama"]
        seen: list[dict] = []

        class Recurrent(torch.nn.Module):
            """Stands in for Huginn: a forward with its own extra argument."""

            config = inner.config

            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def get_input_embeddings(self) -> torch.nn.Module:
                return inner.get_input_embeddings()

            def forward(self, input_ids, attention_mask=None, num_steps=32):  # type: ignore[no-untyped-def]
                seen.append({"num_steps": num_steps, "grad": torch.is_grad_enabled(), "training": self.training})
                return inner(input_ids=input_ids, attention_mask=attention_mask)

        model = Recurrent().train()
        score_continuations(model, self.tok, CONTEXTS[:2], CONTINUATIONS[:2], num_steps=4)
        self.assertTrue(seen)
        self.assertTrue(all(s == {"num_steps": 4, "grad": False, "training": False} for s in seen))
        self.assertTrue(model.training)
        inner.eval()
        with self.assertRaisesRegex(TypeError, "position_ids"):
            score_continuations(model, self.tok, CONTEXTS[:2], CONTINUATIONS[:2], padding_side="left")

    def test_huginn_num_steps_passed_through(self) -> None:
        from models.huginn import HuginnConfig, HuginnForCausalLM

        torch.manual_seed(0)
        model = HuginnForCausalLM(HuginnConfig(
            n_embd=32, num_attention_heads=2, vocab_size=len(self.tok), intermediate_size=48,
            n_layers_in_prelude=1, n_layers_in_recurrent_block=2, n_layers_in_coda=1, mean_recurrence=3,
        )).eval()
        kw = dict(num_steps=2, init_scale=0.0)  # zero initial state: deterministic
        one = score_continuations(model, self.tok, CONTEXTS, CONTINUATIONS, batch_size=1, **kw)
        for side in ("right", "left"):
            many = score_continuations(model, self.tok, CONTEXTS, CONTINUATIONS, batch_size=4, padding_side=side, **kw)
            for a, b in zip(one, many):
                self.assertAlmostEqual(a, b, places=4, msg=side)
        ctx, cont = encode_pair(self.tok, CONTEXTS[0], CONTINUATIONS[0])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ctx + cont]), **kw).logits[0].float(), -1)
        want = sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))
        self.assertAlmostEqual(one[0], want, places=4)
        deeper = score_continuations(model, self.tok, CONTEXTS[:1], CONTINUATIONS[:1], num_steps=5, init_scale=0.0)
        self.assertNotAlmostEqual(deeper[0], one[0], places=4)

    def test_bad_arguments(self) -> None:
        model = self.models["llama"]
        with self.assertRaises(ValueError):
            score_continuations(model, self.tok, ["a", "b"], ["c"])
        with self.assertRaises(ValueError):
            score_continuations(model, self.tok, ["a"], [""])
        with self.assertRaises(TypeError):
            score_continuations(model, self.tok, "a", "b")
        with self.assertRaises(ValueError):
            score_continuations(model, self.tok, ["a"], ["b"], reduction="max")  # type: ignore[arg-type]


if __name__ == "__main__":
    unittest.main()
