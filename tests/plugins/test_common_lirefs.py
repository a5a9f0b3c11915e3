"""plugins.common.lirefs: loading, labels, the schema check, deterministic sampling."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

from plugins.common.lirefs import LiReFsSchemaError, MMLUProItem, label_of, load_lirefs


def entry(**overrides):
    base = {"question": "What is 2 + 3?", "options": ["4", "5", "6"], "answer": "B", "category": "math",
            "memory_reason_score": 0.7}
    base.update(overrides)
    return base


class LoaderTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, entries, name="data.json"):
        path = self.dir / name
        path.write_text(json.dumps(entries))
        return path

    def test_labels_follow_the_threshold(self):
        scores = [0.0, 0.3, 0.5, 0.5000001, 0.9, 1.0]
        items = load_lirefs(self.write([entry(memory_reason_score=s) for s in scores]))
        self.assertEqual([i.label for i in items],
                         ["memorizing", "memorizing", "memorizing", "reasoning", "reasoning", "reasoning"])
        self.assertEqual(label_of(0.5), "memorizing")
        self.assertIsInstance(items[0], MMLUProItem)
        self.assertEqual([i.index for i in items], list(range(6)))
        self.assertEqual(items[0].options, ["4", "5", "6"])

    def test_every_bad_entry_is_reported_with_index_and_field(self):
        entries = [
            entry(),
            entry(answer="Z"),                      # 1: answer
            entry(options="not a list"),            # 2: options
            {k: v for k, v in entry().items() if k != "category"},  # 3: category missing
            entry(memory_reason_score="high"),      # 4: score
            entry(answer="D"),                      # 5: answer beyond the options
            entry(options=[str(i) for i in range(11)]),  # 6: too many options
            "just a string",                        # 7: not an object
        ]
        with self.assertRaises(LiReFsSchemaError) as caught:
            load_lirefs(self.write(entries))
        message = str(caught.exception)
        for expected in ("entry 1: answer", "entry 2: options", "entry 3: category: missing",
                         "entry 4: memory_reason_score", "entry 5: answer", "entry 6: options", "entry 7: <entry>"):
            self.assertIn(expected, message)
        self.assertNotIn("entry 0:", message)
        self.assertEqual(len(caught.exception.problems), 7)
        self.assertIsInstance(caught.exception, ValueError)

    def test_not_a_list(self):
        with self.assertRaises(LiReFsSchemaError):
            load_lirefs(self.write({"question": "x"}))

    def test_missing_file_says_how_to_import(self):
        with self.assertRaises(FileNotFoundError) as caught:
            load_lirefs(self.dir / "absent.json")
        self.assertIn("import_lirefs", str(caught.exception))

    def test_sample_size_is_deterministic_from_the_seed(self):
        path = self.write([entry(question=f"q{i}?", memory_reason_score=(i % 10) / 10) for i in range(50)])
        a = [i.index for i in load_lirefs(path, sample_size=10, seed=3)]
        b = [i.index for i in load_lirefs(path, sample_size=10, seed=3)]
        c = [i.index for i in load_lirefs(path, sample_size=10, seed=4)]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)
        self.assertEqual(len(a), 10)
        self.assertEqual(a, sorted(a))  # file order kept
        self.assertEqual(len(load_lirefs(path, sample_size=500)), 50)
        self.assertEqual(len(load_lirefs(path)), 50)


if __name__ == "__main__":
    unittest.main()
