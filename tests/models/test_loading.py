"""load_model: workspace folders, the offline HF cache, safetensors vs pickle, clear errors."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch

from models.loading import ModelLoadError, check_model_dir, load_model, resolve_model_dir
from tests.models.tiny_models import VOCAB

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"]


def save_tokenizer(directory: Path) -> None:
    """A WordLevel ``tokenizers`` tokenizer without a pad token (load_model must add one)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    fast.save_pretrained(str(directory))


def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                         bos_token_id=0, eos_token_id=1, pad_token_id=None)
    return LlamaForCausalLM(config).eval()


class LoadingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name) / "W"
        cls.model = tiny_llama()
        cls.ids = torch.tensor([[3, 4, 5, 6]])
        with torch.no_grad():
            cls.logits = cls.model(cls.ids).logits
        safe = cls.root / "transformers" / "tiny"
        cls.model.save_pretrained(str(safe))
        save_tokenizer(safe)
        pickled = cls.root / "transformers" / "tiny-bin"
        pickled.mkdir(parents=True)
        (pickled / "config.json").write_text((safe / "config.json").read_text())
        torch.save(cls.model.state_dict(), pickled / "pytorch_model.bin")
        save_tokenizer(pickled)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def assert_same_model(self, model) -> None:
        with torch.no_grad():
            torch.testing.assert_close(model(self.ids).logits, self.logits)

    def test_loads_safetensors_from_a_workspace_root(self) -> None:
        model, tokenizer = load_model("tiny", workspace=self.root)
        self.assert_same_model(model)
        self.assertFalse(model.training)
        self.assertEqual(tokenizer.pad_token, "<eos>")
        self.assertEqual(model.config.pad_token_id, tokenizer.pad_token_id)
        self.assertEqual(tokenizer("the cat sat")["input_ids"], [3, 4, 5])

    def test_directory_path_dtype_device_map_and_padding_side(self) -> None:
        from runner.jobs import DeviceMap

        model, tokenizer = load_model(self.root / "transformers" / "tiny", dtype="bfloat16",
                                      device_map=DeviceMap(placement="cpu"), padding_side="left")
        self.assertEqual(next(model.parameters()).dtype, torch.bfloat16)
        self.assertEqual(tokenizer.padding_side, "left")
        with self.assertRaisesRegex(ModelLoadError, "dtype"):
            load_model("tiny", workspace=self.root, dtype="float8")

    def test_workspace_object_applies_the_name_mapping(self) -> None:
        try:
            from runner.workspace import Workspace
        except ImportError:
            self.skipTest("runner.workspace not available yet")
        (self.root / "latentrun.toml").write_text('[models]\n"seed-name" = "tiny"\n')
        try:
            model, _ = load_model("seed-name", workspace=Workspace.open(self.root))
        finally:
            (self.root / "latentrun.toml").unlink()
        self.assert_same_model(model)

    def test_pickled_weights_need_explicit_permission(self) -> None:
        with self.assertRaisesRegex(ModelLoadError, r"(?s)tiny-bin.*only pickled weights.*allow_pickle=True"):
            load_model("tiny-bin", workspace=self.root)
        model, _ = load_model("tiny-bin", workspace=self.root, allow_pickle=True)
        self.assert_same_model(model)

    def test_malformed_directory_lists_everything_missing(self) -> None:
        broken = self.root / "transformers" / "broken"
        broken.mkdir(parents=True, exist_ok=True)
        (broken / "README.md").write_text("nothing here")
        with self.assertRaises(ModelLoadError) as ctx:
            load_model("broken", workspace=self.root)
        message = str(ctx.exception)
        self.assertIn(str(broken), message)
        for missing in ("config.json", "no weights", "no tokenizer"):
            self.assertIn(missing, message)

    def test_unknown_name_lists_where_it_looked(self) -> None:
        with self.assertRaises(ModelLoadError) as ctx:
            load_model("no-such-model", workspace=self.root)
        message = str(ctx.exception)
        self.assertIn(str(self.root / "transformers" / "no-such-model"), message)
        self.assertIn("Hugging Face cache", message)

    def test_falls_back_to_the_offline_hugging_face_cache(self) -> None:
        from huggingface_hub import constants

        with tempfile.TemporaryDirectory() as cache:
            repo = Path(cache) / "models--someone--tiny"
            snapshot = repo / "snapshots" / "0123abcd"
            snapshot.mkdir(parents=True)
            (repo / "refs").mkdir()
            (repo / "refs" / "main").write_text("0123abcd")
            for item in (self.root / "transformers" / "tiny").iterdir():
                (snapshot / item.name).write_bytes(item.read_bytes())
            with mock.patch.object(constants, "HF_HUB_CACHE", cache):
                self.assertEqual(resolve_model_dir("someone/tiny", self.root), snapshot)
                model, _ = load_model("someone/tiny", workspace=self.root)
        self.assert_same_model(model)

    def test_unavailable_options_are_clear_errors(self) -> None:
        with self.assertRaisesRegex(ModelLoadError, "bitsandbytes|CUDA"):
            load_model("tiny", workspace=self.root, quantization="8bit")
        if not torch.cuda.is_available():
            with self.assertRaisesRegex(ModelLoadError, "needs CUDA"):
                load_model("tiny", workspace=self.root, device_map="cuda:0")

    def test_huginn_directory_loads_without_remote_code(self) -> None:
        try:
            from models.huginn import HuginnConfig, HuginnForCausalLM
        except ImportError:
            self.skipTest("models.huginn not available")
        torch.manual_seed(0)
        config = HuginnConfig(n_embd=32, num_attention_heads=2, vocab_size=VOCAB, intermediate_size=48,
                              n_layers_in_prelude=1, n_layers_in_recurrent_block=2, n_layers_in_coda=1,
                              mean_recurrence=2)
        original = HuginnForCausalLM(config).eval()
        directory = self.root / "transformers" / "huginn-tiny"
        original.save_pretrained(str(directory))
        save_tokenizer(directory)
        model, _ = load_model("huginn-tiny", workspace=self.root)
        self.assertIsInstance(model, HuginnForCausalLM)
        with torch.no_grad():
            torch.testing.assert_close(model(self.ids, init_scale=0.0).logits, original(self.ids, init_scale=0.0).logits)

    def test_check_model_dir_accepts_a_good_directory(self) -> None:
        info = check_model_dir(self.root / "transformers" / "tiny")
        self.assertTrue(info["safetensors"])


if __name__ == "__main__":
    unittest.main()
