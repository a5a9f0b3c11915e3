"""Linear probes: separable data ~1.0, shuffled labels ~chance, orientation, CI, the sub-job's outputs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
import unittest

import numpy as np
import torch

from plugins.candidate_directions import PROBES, load_directions
from plugins.candidate_directions.probes import Probe, fit_layer, split, train_linear_probes
from plugins.common.stats import accuracy
from plugins.common.hidden_states import write_hidden_states
from runner.context import CheckpointStore
from runner.jobs import DeviceMap
from runner.workspace import Workspace
from tests.plugins.directions_support import QuietContext

PARAMS = {"probe_C": 1.0, "probe_max_iter": 1000, "seed": 0, "bootstrap": 500, "test_ratio": 0.25}


def separable(n: int = 300, hidden: int = 12, seed: int = 0, margin: float = 6.0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=hidden)
    w /= np.linalg.norm(w)
    y = (np.arange(n) % 2).astype(np.int64)  # 1 = reasoning
    x = rng.normal(size=(n, hidden)) + np.outer(np.where(y == 1, margin / 2, -margin / 2), w) + 3.0
    return x, y, w


class TestProbe(unittest.TestCase):
    def test_separable_near_one_shuffled_near_chance(self):
        x, y, _ = separable()
        train, test = split(y, 0.25, 0)
        y_shuffled = np.random.default_rng(1).permutation(y)
        row, _probe = fit_layer(x, y, y_shuffled, train, test, PARAMS)
        self.assertGreaterEqual(row["probe"]["accuracy"], 0.97)
        self.assertEqual(row["probe"]["n"], len(test))
        self.assertLessEqual(row["probe"]["ci_low"], row["probe"]["accuracy"])
        self.assertLess(abs(row["shuffled"]["accuracy"] - 0.5), 0.2)
        self.assertLessEqual(row["shuffled"]["ci_low"], 0.5 + 0.05)

    def test_direction_points_from_memorizing_to_reasoning_in_activation_space(self):
        x, y, w_true = separable(margin=6.0)
        for labels in (y, 1 - y):  # whichever class sklearn lists first
            probe = Probe().fit(x, labels)
            w, b = probe.reasoning_weights()
            logit = x @ w + b
            self.assertGreater(float(np.mean((logit > 0) == (labels == 1))), 0.95)
            sign = 1 if labels is y else -1
            self.assertGreater(sign * float(np.dot(w, w_true) / np.linalg.norm(w)), 0.9)

    def test_bootstrap_interval(self):
        correct = np.array([1.0] * 80 + [0.0] * 20)
        stat = accuracy(correct, seed=0, n_boot=2000)
        low, high = stat["lo"], stat["hi"]
        self.assertLess(low, 0.8)
        self.assertGreater(high, 0.8)
        self.assertLess(high - low, 0.2)
        wide = accuracy(np.array([1.0] * 8 + [0.0] * 2), seed=0, n_boot=2000)
        self.assertGreater(wide["hi"] - wide["lo"], high - low)


class TestProbeSubJob(unittest.TestCase):
    def test_outputs_tables_plot_and_directions(self):
        rng = np.random.default_rng(0)
        hidden = 8
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace.open(tmp)
            folders = []
            for name, signal in (("main", 6.0), ("control", 0.0)):
                x, y, _ = separable(200, hidden, seed=1, margin=signal)
                labels = ["reasoning" if v else "memorizing" for v in y]
                values = {"embed": torch.from_numpy(rng.normal(size=(200, hidden))).float(),
                          0: torch.from_numpy(x).float()}
                folders.append(ws.root / name)
                write_hidden_states(folders[-1], values, labels, layer_names={0: "blocks.0"}, model="synthetic",
                                    dataset=name, mode="FIRST_ANSWER_TOKEN")
            out = {"model": "synthetic", "dataset": "main", "mode": "FIRST_ANSWER_TOKEN", "variant": ""}
            writes = [ws.root / PROBES.format(**out) / f for f in ("accuracy.csv", "accuracy.json", "accuracy.png",
                                                                 "directions.safetensors", "directions.json")]
            ctx = QuietContext(job="probes", subjob="probes", run_id="r", params=dict(PARAMS), workspace=ws,
                               device_map=DeviceMap("cpu"), reads=folders, writes=writes,
                               checkpoint=CheckpointStore(ws.root / "ckpt"))
            with contextlib.redirect_stdout(io.StringIO()):
                train_linear_probes(ctx)
            summary = json.loads(writes[1].read_text())
            by_layer = {row["layer"]: row for row in summary["layers"]}
            self.assertGreater(by_layer[0]["probe"]["accuracy"], 0.95)
            self.assertLess(by_layer[0]["surface_matched"]["accuracy"], 0.75)  # no signal in the control set
            self.assertLess(abs(by_layer["embed"]["probe"]["accuracy"] - 0.5), 0.25)
            self.assertEqual(by_layer[0]["probe"]["n"], 50)
            rows = list(csv.DictReader(writes[0].read_text().splitlines()))
            self.assertEqual([r["layer"] for r in rows], ["embed", "0"])
            self.assertIn("surface_matched_ci_low", rows[0])
            self.assertEqual(writes[2].read_bytes()[:4], b"\x89PNG")
            d = load_directions(writes[3])
            self.assertEqual(d["meta"]["kind"], "linear_probe")
            self.assertEqual(tuple(d["bias"][0].shape), (1,))
            self.assertAlmostEqual(float(d["unit_direction"][0].norm()), 1.0, places=5)
            x0 = d["reasoning_mean"][0] - d["memorizing_mean"][0]
            self.assertGreater(float(torch.nn.functional.cosine_similarity(d["direction"][0], x0, dim=0)), 0.5)


if __name__ == "__main__":
    unittest.main()
