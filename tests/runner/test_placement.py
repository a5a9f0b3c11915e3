"""--dry-run prints a multi-GPU placement computed on the meta device (no weights, no GPU)."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

from tests.runner.cli import TempWorkspace
from tests.support import slow

# Published Meta-Llama-3-8B config values (the facts the placement depends on).
LLAMA_3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
              "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
              "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "torch_dtype": "bfloat16"}
TWO_GPUS = {"placement": "auto", "max_memory": {"0": "10GiB", "1": "10GiB", "cpu": "64GiB"}}


class DryRunPlacementTest(TempWorkspace, unittest.TestCase):
    @slow
    def test_llama_3_8b_config_is_spread_over_two_gpus_without_weights(self):
        model = self.ws / "transformers/Meta-Llama-3-8B"
        model.mkdir(parents=True)
        (model / "config.json").write_text(json.dumps(LLAMA_3_8B))
        (self.ws / "datasets/someone/data").mkdir(parents=True)
        result = self.cli("--jobs", "fixture_needs_inputs", "--set", "model=Meta-Llama-3-8B", "--dry-run", "--json",
                          "--set", f"device_map={json.dumps(TWO_GPUS)}")
        self.assertEqual(result.returncode, 0, result.stderr)
        summary = json.loads(result.stdout)[0]["placement"]["summary"]
        self.assertEqual(sorted(summary), ["0", "1"])
        self.assertTrue(summary["0"][0] == "model.embed_tokens" and summary["1"][-1] == "lm_head", summary)
        self.assertFalse((self.ws / "experiments").exists())


class HuginnPlacementTest(unittest.TestCase):
    @slow
    def test_published_huginn_config_is_spread_over_two_gpus(self):
        from models.huginn import HuginnConfig
        from models.placement import infer_placement, summarize

        with tempfile.TemporaryDirectory() as tmp:
            HuginnConfig().save_pretrained(tmp)  # the published sizes: 3.56 B parameters
            placement = infer_placement(Path(tmp), "auto", {"0": "4GiB", "1": "4GiB", "cpu": "64GiB"})
        devices = set(placement.values())
        self.assertTrue({0, 1} <= devices, summarize(placement))

    def test_summary_folds_numbered_blocks(self):
        from models.placement import summarize

        placement = {"embed": 0, "layers.0": 0, "layers.1": 0, "layers.2": 1, "layers.3": 1, "head": 1}
        self.assertEqual(summarize(placement), {"0": ["embed", "layers.0-1"], "1": ["layers.2-3", "head"]})


if __name__ == "__main__":
    unittest.main()
