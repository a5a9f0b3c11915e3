"""The example workspace's LiReFs files exist, pass the schema check and hold both labels."""

from __future__ import annotations

import json
import unittest

from plugins.common.lirefs import FEW_SHOT_DIR, LIREFS_FILE, SURFACE_MATCHED_FILE, load_few_shot, load_lirefs
from plugins.common.prompts import build_prompt
from tests.support import REPO_ROOT

WS = REPO_ROOT / "workspace.example"


class ExampleWorkspaceTest(unittest.TestCase):
    def test_main_and_surface_matched_files(self):
        for rel in (LIREFS_FILE, SURFACE_MATCHED_FILE):
            with self.subTest(file=rel):
                items = load_lirefs(WS / rel)
                labels = {i.label for i in items}
                self.assertEqual(labels, {"reasoning", "memorizing"})
                self.assertGreaterEqual(len(items), 100)
                raw = json.loads((WS / rel).read_text())
                for entry in raw:  # the extra fields the published file has
                    self.assertTrue({"question_id", "answer_index", "src"} <= set(entry))

    def test_surface_matched_classes_share_length(self):
        items = load_lirefs(WS / SURFACE_MATCHED_FILE)
        self.assertEqual(len({len(i.question.split()) for i in items}), 1)  # one word count for all
        mean = {label: sum(len(i.question) for i in items if i.label == label) /
                sum(1 for i in items if i.label == label) for label in ("reasoning", "memorizing")}
        self.assertLess(abs(mean["reasoning"] - mean["memorizing"]), 5)

    def test_few_shot_split(self):
        few = load_few_shot(WS / FEW_SHOT_DIR)
        items = load_lirefs(WS / LIREFS_FILE)
        self.assertTrue({i.category for i in items} <= set(few))
        for category, shots in few.items():
            self.assertGreaterEqual(len(shots), 1)
            self.assertTrue(all(s.cot_content.startswith("A: Let's think step by step.") for s in shots))
            self.assertTrue(all(s.category == category for s in shots))
        item = items[0]
        text = build_prompt(item, "evaluation", few_shot=few[item.category])
        self.assertEqual(text.count("Q: "), len(few[item.category]) + 1)

    def test_models_are_mapped(self):
        import tomllib

        config = tomllib.loads((WS / "latentrun.toml").read_text())
        self.assertEqual(config["models"]["huginn-0125"], "tiny-huginn-0125")
        self.assertEqual(config["models"]["Meta-Llama-3-8B"], "tiny-llama-3-8b")
        for folder in ("tiny-huginn-0125", "tiny-llama-3-8b"):
            model_dir = WS / "transformers" / folder
            self.assertTrue((model_dir / "config.json").exists(), folder)
            self.assertTrue((model_dir / "tokenizer.json").exists(), folder)
            self.assertTrue(list(model_dir.glob("*.safetensors")), folder)


if __name__ == "__main__":
    unittest.main()
