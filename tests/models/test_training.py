"""The tiny-model training routine: it learns, it is reproducible, and what it saves loads back."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPTNeoXConfig, LlamaConfig

from models.training import BOS, EOS, PAD, UNK, atomic_directory, train_tiny, train_tokenizer
from tests.support import limit_torch_threads, restore_torch_threads

PATTERN = "red green blue yellow purple"
TEXTS = [" ".join([PATTERN] * 6)] * 4


def _llama(vocab: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads

class TrainingTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.tok = train_tokenizer(TEXTS, vocab_size=64, kind="wordlevel")

    def test_tokenizer_special_tokens_and_round_trip(self) -> None:
        for kind in ("bpe", "wordlevel"):
            out = self.tmp / f"tok-{kind}"
            tok = train_tokenizer(TEXTS + ["Hello, world!"], vocab_size=300, out_dir=out, kind=kind)
            self.assertEqual(
                (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token), (BOS, EOS, PAD, UNK)
            )
            self.assertEqual(tok("red green")["input_ids"][0], tok.bos_token_id)
            loaded = AutoTokenizer.from_pretrained(out, local_files_only=True)
            self.assertEqual(loaded("red green blue")["input_ids"], tok("red green blue")["input_ids"])
            self.assertEqual(loaded.pad_token_id, tok.pad_token_id)
        bpe = train_tokenizer(TEXTS, vocab_size=300, kind="bpe")
        self.assertEqual(bpe.decode(bpe("héllo wörld", add_special_tokens=False)["input_ids"]), "héllo wörld")

    def test_learns_a_repeated_pattern_and_saves_loadably(self) -> None:
        out = train_tiny(_llama(len(self.tok)), TEXTS, steps=60, seed=0, out_dir=self.tmp / "m",
                         tokenizer=self.tok, lr=1e-2, seq_len=24)
        self.assertEqual(out, self.tmp / "m")
        self.assertTrue((out / "model.safetensors").is_file())
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["m"])  # no temp dirs left behind
        losses = [e["loss"] for e in json.loads((out / "training_log.json").read_text())["losses"]]
        self.assertLess(losses[-1], losses[0] / 10, losses)

        model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
        words = PATTERN.split()
        for i in range(len(words)):
            prompt = " ".join((words * 2)[i : i + 4])
            ids = torch.tensor([tok(prompt)["input_ids"]])
            with torch.no_grad():
                nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            self.assertEqual(tok.decode([nxt]).strip(), (words * 2)[i + 4], prompt)

    def test_same_seed_same_weights(self) -> None:
        cfg = _llama(len(self.tok))
        kw = dict(tokenizer=self.tok, steps=5, seq_len=16, batch_size=4)
        a = _weights(train_tiny(cfg, TEXTS, seed=1, out_dir=self.tmp / "a", **kw))
        b = _weights(train_tiny(cfg, TEXTS, seed=1, out_dir=self.tmp / "b", **kw))
        c = _weights(train_tiny(cfg, TEXTS, seed=2, out_dir=self.tmp / "c", **kw))
        self.assertEqual(a.keys(), b.keys())
        for k in a:
            self.assertTrue(torch.equal(a[k], b[k]), k)
        self.assertFalse(all(torch.equal(a[k], c[k]) for k in a))

    def test_architectures_and_token_sequences_unpacked(self) -> None:
        seqs = [[5, 6, 7, 8, 9], [5, 6, 7], [9, 8, 7, 6, 5, 4]]
        configs = {
            "gpt2": GPT2Config(vocab_size=16, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0),
            "neox": GPTNeoXConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, max_position_embeddings=32),
        }
        for name, cfg in configs.items():
            out = train_tiny(cfg, seqs, steps=3, seed=0, out_dir=self.tmp / name, pack=False, batch_size=2)
            model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
            self.assertEqual(model.config.model_type, cfg.model_type)
            self.assertFalse((out / "tokenizer.json").exists())

    def test_huginn_with_per_step_forward_kwargs(self) -> None:
        from models.huginn import HuginnConfig

        cfg = HuginnConfig(n_embd=32, num_attention_heads=2, vocab_size=len(self.tok), intermediate_size=48,
                           n_layers_in_prelude=1, n_layers_in_recurrent_block=1, n_layers_in_coda=1,
                           mean_recurrence=2)
        seen: list[int] = []

        def depth(step: int) -> dict:
            seen.append(1 + step % 3)
            return {"num_steps": seen[-1]}

        out = train_tiny(cfg, TEXTS, steps=20, seed=0, out_dir=self.tmp / "h", tokenizer=self.tok,
                         seq_len=16, lr=1e-2, forward_kwargs=depth)
        self.assertEqual(seen[:4], [1, 2, 3, 1])
        losses = [e["loss"] for e in json.loads((out / "training_log.json").read_text())["losses"]]
        self.assertLess(losses[-1], losses[0])
        model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
        self.assertEqual(model.config.model_type, cfg.model_type)

    def test_refuses_to_overwrite_and_leaves_nothing_on_failure(self) -> None:
        cfg = _llama(len(self.tok))
        out = train_tiny(cfg, TEXTS, steps=1, seed=0, out_dir=self.tmp / "m", tokenizer=self.tok, seq_len=8)
        with self.assertRaises(FileExistsError):
            train_tiny(cfg, TEXTS, steps=1, seed=0, out_dir=out, tokenizer=self.tok, seq_len=8)
        with self.assertRaises(RuntimeError):
            with atomic_directory(self.tmp / "broken") as tmp:
                (tmp / "half.bin").write_bytes(b"x")
                raise RuntimeError("killed")
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["m"])
        with self.assertRaisesRegex(ValueError, "vocab_size"):
            train_tiny(_llama(4), TEXTS, steps=1, seed=0, out_dir=self.tmp / "x", tokenizer=self.tok)

    def test_num_threads_restored(self) -> None:
        before = torch.get_num_threads()
        train_tiny(_llama(len(self.tok)), TEXTS, steps=1, seed=0, out_dir=self.tmp / "t",
                   tokenizer=self.tok, seq_len=8, num_threads=2)
        self.assertEqual(torch.get_num_threads(), before)


if __name__ == "__main__":
    unittest.main()
