"""Streaming accumulators: exact streaming means, merges, constant memory, save/load."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import torch

from models.accumulators import Accumulator


def batches(n_batches: int, batch: int = 8, hidden: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        values = {0: torch.randn(batch, hidden, generator=g), "embed": torch.randn(batch, hidden, generator=g) + 3}
        labels = torch.randint(0, 3, (batch,), generator=g)
        yield values, labels


class AccumulatorTest(unittest.TestCase):
    def test_streaming_class_means_equal_all_at_once(self) -> None:
        data = list(batches(10))
        acc = Accumulator(second_moments=True)
        for values, labels in data:
            acc.update(values, labels)
        for key in (0, "embed"):
            full = torch.cat([v[key] for v, _ in data]).double()
            labels = torch.cat([lab for _, lab in data])
            self.assertEqual(acc.count, full.shape[0])
            torch.testing.assert_close(acc.mean(key), full.mean(0), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(acc.variance(key), full.var(0, unbiased=False), rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(acc.variance(key, unbiased=True), full.var(0), rtol=1e-10, atol=1e-10)
            means = acc.class_means(key)
            self.assertEqual(sorted(means), sorted(set(labels.tolist())))
            for label, mean in means.items():
                torch.testing.assert_close(mean, full[labels == label].mean(0), rtol=1e-12, atol=1e-12)
                self.assertEqual(acc.class_counts[label], int((labels == label).sum()))
        self.assertEqual(acc.mean(0).dtype, torch.float64)

    def test_merge_of_two_equals_one(self) -> None:
        data = list(batches(6))
        one = Accumulator(second_moments=True)
        a, b = Accumulator(second_moments=True), Accumulator(second_moments=True)
        for i, (values, labels) in enumerate(data):
            one.update(values, labels)
            (a if i % 2 else b).update(values, labels)
        merged = Accumulator.merged([a, b])
        self.assertEqual(merged.count, one.count)
        self.assertEqual(merged.class_counts, one.class_counts)
        for key in (0, "embed"):
            torch.testing.assert_close(merged.mean(key), one.mean(key), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(merged.variance(key), one.variance(key), rtol=1e-10, atol=1e-10)
            for label, mean in one.class_means(key).items():
                torch.testing.assert_close(merged.class_means(key)[label], mean, rtol=1e-12, atol=1e-12)

    def test_memory_does_not_grow_with_n(self) -> None:
        acc = Accumulator(second_moments=True)
        sizes = []
        for values, labels in batches(50):
            acc.update(values, labels)
            sizes.append(acc.sizes())
        # 2 layers x 12 dims x (sum + squares + 3 class sums), from the moment all classes were seen
        self.assertEqual(sizes[-1], 2 * 12 * (2 + 3))
        self.assertEqual(len(set(sizes[5:])), 1)

    def test_state_dict_and_safetensors_round_trip(self) -> None:
        acc = Accumulator(second_moments=True)
        for values, labels in batches(3):
            acc.update(values, [["neg", "pos", "neu"][int(x)] for x in labels])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stats.safetensors"
            acc.save(path, metadata={"model": "tiny", "layers": [0, "embed"]})
            back = Accumulator.load(path)
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                self.assertEqual(f.metadata()["model"], '"tiny"')
        self.assertEqual(back.count, acc.count)
        self.assertEqual(back.class_counts, acc.class_counts)
        self.assertEqual(set(back.layers), {0, "embed"})
        torch.testing.assert_close(back.class_means("embed")["pos"], acc.class_means("embed")["pos"])
        torch.testing.assert_close(back.variance(0), acc.variance(0))

    def test_errors(self) -> None:
        acc = Accumulator()
        with self.assertRaisesRegex(ValueError, r"\[batch, hidden\]"):
            acc.update({0: torch.zeros(2, 3, 4)})
        with self.assertRaisesRegex(ValueError, "labels"):
            acc.update({0: torch.zeros(2, 3)}, labels=[1])
        with self.assertRaisesRegex(ValueError, "second_moments"):
            acc.update({0: torch.zeros(2, 3)}).variance(0)


if __name__ == "__main__":
    unittest.main()
