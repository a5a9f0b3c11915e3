"""icl_strategies: predictors vs hand-computed cases, data moments, complexity, fit recovery, resume."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from plugins.icl_strategies import hbm, predictors as P
from plugins.icl_strategies.behaviour import relative_distance, strategies, task_loss
from plugins.icl_strategies.data import (
    WITHIN_CLASS_VARIANCE, TaskSet, eval_tasks, noise_variance, rng, sample_batch, train_tasks,
)
from runner.context import CheckpointStore
from tests.runner.cli import TempWorkspace, start_cli
from tests.support import limit_torch_threads, restore_torch_threads, slow

setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads


class TestPredictors(unittest.TestCase):
    def test_dirichlet_posterior_mean_after_a_known_sequence(self):
        """Laplace's rule: (count + 1) / (t + D) after each prefix of 0, 0, 2 with D = 3."""
        out = P.generalizing_categorical(np.ones(3), np.array([[0, 0, 2]]))[0]
        np.testing.assert_allclose(out[0], [1 / 3, 1 / 3, 1 / 3])
        np.testing.assert_allclose(out[1], [2 / 4, 1 / 4, 1 / 4])
        np.testing.assert_allclose(out[3], [3 / 6, 1 / 6, 2 / 6])

    def test_ridge_becomes_least_squares_as_the_prior_vanishes(self):
        g = np.random.default_rng(0)
        x, w = g.standard_normal((1, 12, 4)), g.standard_normal(4)
        y = x[0] @ w + 0.3 * g.standard_normal(12)
        out = P.ridge_regression(1e12, 1.0, x, y[None])[0]
        for t in (6, 11):  # after ≥ D pairs the least-squares fit is unique
            fit = np.linalg.lstsq(x[0, :t], y[:t], rcond=None)[0]
            self.assertAlmostEqual(out[t], float(x[0, t] @ fit), places=6)
        self.assertEqual(out[0], 0.0)  # nothing seen: the prior mean
        ridge = P.ridge_regression(2.0, 0.5, x, y[None])[0]  # posterior mean under w ~ N(0, 2 I)
        xs, ys = x[0, :5], y[:5]
        w5 = np.linalg.solve(xs.T @ xs + 0.25 * np.eye(4), xs.T @ ys)
        self.assertAlmostEqual(ridge[5], float(x[0, 5] @ w5), places=8)

    def test_memorizing_puts_its_mass_on_the_true_task(self):
        tasks = train_tasks("categorical-sequence", 6, 16, seed=3).tasks
        seq = TaskSet("categorical-sequence", tasks[[5]])
        tokens = sample_batch(seq, 1, 400, rng(0, "eval-id", 1)).tokens[:, 1:]
        out = P.memorizing_categorical(tasks, tokens)[0]
        np.testing.assert_allclose(out[-1], tasks[5], atol=1e-6)
        np.testing.assert_allclose(out[0], tasks.mean(axis=0))  # before any draw: the mean of the prior

        ws = train_tasks("linear-regression", 4, 32, seed=3)
        batch = sample_batch(ws, 1, 40, rng(0, "eval-id", 2), task_index=np.array([7]))
        pred = P.memorizing_regression(ws.tasks, noise_variance(4), batch.x, batch.y)[0]
        np.testing.assert_allclose(pred[-1], batch.x[0, -1] @ ws.tasks[7], rtol=1e-5)

    def test_classification_predictors_find_the_label(self):
        items = train_tasks("classification", 8, 64, seed=1)
        batch = sample_batch(items, 200, 16, rng(0, "eval-id", 3))
        truth = batch.y[:, -1]
        m = P.memorizing_classification(items.tasks, items.labels, WITHIN_CLASS_VARIANCE, batch.x, batch.y)
        g = P.copying_classification(WITHIN_CLASS_VARIANCE, batch.x, batch.y)
        self.assertGreater((m.argmax(1) == truth).mean(), 0.8)
        self.assertGreater((g.argmax(1) == truth).mean(), 0.8)
        # on fresh items only copying from the context can work
        fresh = sample_batch(eval_tasks("classification", 8, 64, seed=1), 200, 16, rng(0, "eval-ood"))
        g_fresh = P.copying_classification(WITHIN_CLASS_VARIANCE, fresh.x, fresh.y)
        self.assertGreater((g_fresh.argmax(1) == fresh.y[:, -1]).mean(), 0.8)
        np.testing.assert_allclose(P.constant_classification(batch.x, batch.y), 0.5)

    def test_relative_distance_is_plus_one_at_m_and_minus_one_at_g(self):
        ts = train_tasks("categorical-sequence", 8, 4, seed=0)
        batch = sample_batch(ts, 16, 12, rng(0, "eval-id", 4))
        s = strategies(ts)
        m, g = s["M"](batch), s["G"](batch)
        np.testing.assert_allclose(relative_distance(ts.setting, m, m, g), 1.0)
        np.testing.assert_allclose(relative_distance(ts.setting, g, m, g), -1.0)
        # M is Bayes-optimal on its own tasks: lower loss than G and than the constant
        losses = {q: task_loss(ts, batch, s[q](batch)).mean() for q in "MGC"}
        self.assertLess(losses["M"], losses["G"])
        self.assertLess(losses["G"], losses["C"])


class TestData(unittest.TestCase):
    def test_deterministic_for_a_seed(self):
        for setting in ("categorical-sequence", "linear-regression", "classification"):
            a, b = train_tasks(setting, 8, 16, 5), train_tasks(setting, 8, 16, 5)
            np.testing.assert_array_equal(a.tasks, b.tasks)
            self.assertFalse(np.array_equal(a.tasks, train_tasks(setting, 8, 16, 6).tasks))
            x = sample_batch(a, 4, 8, rng(1, "train-batches", 8, 16))
            y = sample_batch(a, 4, 8, rng(1, "train-batches", 8, 16))
            for field in ("tokens", "x", "y"):
                if getattr(x, field) is not None:
                    np.testing.assert_array_equal(getattr(x, field), getattr(y, field))

    def test_round_trip_on_disk(self):
        ts = train_tasks("classification", 4, 8, 0)
        with tempfile.TemporaryDirectory() as tmp:
            ts.save(Path(tmp) / "t.npz")
            back = TaskSet.load(Path(tmp) / "t.npz")
        np.testing.assert_array_equal(back.tasks, ts.tasks)
        np.testing.assert_array_equal(back.labels, ts.labels)
        self.assertEqual(back.setting, "classification")

    def test_categorical_moments(self):
        d = 8
        theta = train_tasks("categorical-sequence", d, 4000, 0).tasks
        np.testing.assert_allclose(theta.mean(0), 1 / d, atol=0.005)  # Dirichlet(1): mean 1/D
        np.testing.assert_allclose(theta.var(0), (d - 1) / (d * d * (d + 1)), rtol=0.1)
        ts = TaskSet("categorical-sequence", theta[:2])
        batch = sample_batch(ts, 4000, 64, rng(0, "eval-id", 5), task_index=np.zeros(4000, dtype=int))
        self.assertTrue((batch.tokens[:, 0] == d).all())  # start token
        freq = np.bincount(batch.tokens[:, 1:].ravel(), minlength=d) / batch.tokens[:, 1:].size
        np.testing.assert_allclose(freq, theta[0], atol=0.003)

    def test_regression_moments(self):
        d = 8
        ts = train_tasks("linear-regression", d, 4000, 0)
        self.assertAlmostEqual(ts.tasks.mean(), 0, delta=0.02)
        self.assertAlmostEqual(ts.tasks.var(), 1, delta=0.03)
        batch = sample_batch(ts, 2000, 16, rng(0, "eval-id", 6))
        self.assertAlmostEqual(batch.x.var(), 1, delta=0.02)
        residual = batch.y - np.einsum("btd,bd->bt", batch.x, ts.tasks[batch.task_index])
        self.assertAlmostEqual(residual.var() / noise_variance(d), 1, delta=0.05)  # σ² = D/256

    def test_classification_moments_and_burstiness(self):
        d, s2 = 8, WITHIN_CLASS_VARIANCE
        ts = train_tasks("classification", d, 4000, 0)
        self.assertAlmostEqual(ts.tasks.var() * d, 1, delta=0.03)  # items ~ N(0, I/D)
        self.assertAlmostEqual(ts.labels.mean(), 0.5, delta=0.03)
        batch = sample_batch(ts, 2000, 12, rng(0, "eval-id", 7))
        noise = batch.x * np.sqrt(1 + s2) - ts.tasks[batch.task_index]
        self.assertAlmostEqual(noise.var() * d / s2, 1, delta=0.03)  # within-class variance
        in_context = [q in row[:-1] for q, row in zip(batch.task_index[:, -1], batch.task_index)]
        self.assertTrue(all(in_context))  # the query's item is always in the context
        np.testing.assert_array_equal(batch.y, ts.labels[batch.task_index])


class TestComplexityAndFit(unittest.TestCase):
    def test_complexity_is_measured_and_grows_with_n_for_m_only(self):
        small, large = (strategies(train_tasks("categorical-sequence", 8, n, 0)) for n in (8, 64))
        k = {name: {q: hbm.complexity_bits(s[q].function, s[q].prior) for q in "MG"}
             for name, s in (("small", small), ("large", large))}
        self.assertEqual(k["small"]["G"], k["large"]["G"])
        self.assertEqual(k["small"]["M"]["code_bits"], k["large"]["M"]["code_bits"])
        self.assertGreater(k["large"]["M"]["prior_bits"], 4 * k["small"]["M"]["prior_bits"])
        self.assertGreater(k["small"]["M"]["bits"], k["small"]["G"]["bits"])
        self.assertNotIn('"""', hbm.source_without_docs(P.memorizing_categorical))

    def test_fit_recovers_parameters_from_behaviour_the_model_generated(self):
        """Transformer predictions := the model's own mixture at known (α, β, γ); the fit finds them again."""
        num_tasks, steps = [4, 16, 64, 256], np.array([int(s * s) for s in np.linspace(4, 70, 12)])
        k, loss, pm, pg = [], [], [], []
        for n in num_tasks:
            ts = train_tasks("categorical-sequence", 8, n, 0)
            s = strategies(ts)
            k.append([hbm.complexity_bits(s[q].function, s[q].prior)["bits"] for q in "MG"])
            batch = sample_batch(ts, 24, 16, rng(0, "eval-id", n))
            pm.append(s["M"](batch))
            pg.append(s["G"](batch))
            big = sample_batch(ts, 400, 16, rng(0, "loss", n))
            loss.append([task_loss(ts, big, s[q](big)).mean() for q in "MG"])
        inputs = hbm.ModelInputs(np.array(num_tasks), steps, np.array(k, float), np.array(loss))
        truth = (0.45, 0.3, 2.5)
        w = hbm.weight_m(truth, inputs)
        self.assertTrue(0.05 < w.mean() < 0.95, "the planted behaviour must mix M and G")
        pm, pg = np.array(pm), np.array(pg)
        shape = w.shape + (1, 1, 1)
        target = w.reshape(shape) * pm[:, None] + (1 - w.reshape(shape)) * pg[:, None]
        fitted = hbm.fit("categorical-sequence", inputs, target, pm, pg, np.ones(w.shape, bool))
        for name, value in zip(hbm.PARAM_NAMES, truth):
            self.assertAlmostEqual(fitted["params"][name], value, delta=0.03 * value, msg=name)


class TestTraining(unittest.TestCase):
    def test_killed_cell_resumes_to_the_same_weights(self):
        from plugins.icl_strategies import training
        from plugins.icl_strategies.modeling import load_checkpoint

        ts = train_tasks("categorical-sequence", 4, 8, 0)
        kwargs = dict(context_length=8, mlp_expansion_factor=1.0, max_steps=40, seed=0, batch_size=8,
                      warmup_steps=5, num_checkpoints=5)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            training.train_cell(ts, root / "straight", CheckpointStore(root / "store-a"), **kwargs)
            real, calls = training.save_checkpoint, []

            def dies_on_third(model, folder, step):
                calls.append(step)
                if len(calls) == 3:
                    raise KeyboardInterrupt  # killed between two checkpoints
                real(model, folder, step)

            with mock.patch.object(training, "save_checkpoint", dies_on_third):
                with self.assertRaises(KeyboardInterrupt):
                    training.train_cell(ts, root / "resumed", CheckpointStore(root / "store-b"), **kwargs)
            saved = CheckpointStore(root / "store-b").load("train")["step"]
            self.assertEqual(saved, calls[1])
            with mock.patch.object(training, "save_checkpoint", wraps=real) as spy:
                training.train_cell(ts, root / "resumed", CheckpointStore(root / "store-b"), **kwargs)
            self.assertTrue(all(c.args[2] > saved for c in spy.call_args_list), "no step before the kill redone")
            a = load_checkpoint(training.checkpoint_folder(root / "straight", 40)).state_dict()
            b = load_checkpoint(training.checkpoint_folder(root / "resumed", 40)).state_dict()
            for name in a:
                torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
            log = training.read_training_log(root / "resumed")
            self.assertEqual(log["checkpoints"], training.sqrt_schedule(40, 5))

    def test_every_setting_trains_and_round_trips(self):
        from plugins.icl_strategies.modeling import build_model, load_checkpoint, predict, save_checkpoint

        for setting, length in (("linear-regression", 6), ("classification", 8), ("categorical-sequence", 8)):
            ts = train_tasks(setting, 4, 8, 0)
            model = build_model(setting, 4, length, 0.5, seed=0)
            self.assertEqual(model.config.num_hidden_layers, 8 if setting == "linear-regression" else 1)
            self.assertEqual(model.config.intermediate_size, 32)
            batch = sample_batch(ts, 16, length, rng(0, "eval-id", 9))
            pred = predict(model, batch)
            self.assertEqual(pred.shape, strategies(ts)["M"](batch).shape)
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(model, Path(tmp) / "c", 1)
                np.testing.assert_array_equal(predict(load_checkpoint(Path(tmp) / "c"), batch), pred)


class TestPlan(unittest.TestCase):
    def test_bad_params_are_all_reported_before_anything_runs(self):
        from plugins.icl_strategies import _params, _subjobs
        from runner.jobs import ParamError

        params = {k: v.default for k, v in _params().items()}
        names = [s.name for s in _subjobs(params)]
        self.assertEqual(names[:2], ["data", "train@N=4"])
        self.assertEqual(names[-1], "analyse")
        bad = {**params, "num_tasks": [8, 4], "train_fraction": 1.5, "context_length": 1}
        with self.assertRaises(ParamError) as caught:
            _subjobs(bad)
        for key in ("num_tasks", "train_fraction", "context_length"):
            self.assertIn(key, str(caught.exception))


@slow
class TestGridResume(TempWorkspace, unittest.TestCase):
    def wait_for_glob(self, pattern: str, seconds: float = 120) -> Path:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = list(self.ws.glob(pattern))
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"{pattern} never appeared")

    def test_killed_grid_resumes_with_finished_cells_skipped(self):
        sets = ["--set", "num_tasks=2,4,8", "--set", "max_steps=600", "--set", "context_length=8",
                "--set", "num_dims=4", "--set", "num_checkpoints=6", "--set", "num_eval_sequences=32",
                "--set", "num_eval_tasks=50", "--set", "num_loss_sequences=200", "--set", "batch_size=16"]
        args = ["--jobs", "icl_strategies", *sets, "--workspace_path", str(self.ws)]
        root = self.ws / "experiments/icl_strategies/categorical-sequence/D4-T8-mlp4-seed0"
        first_log = root / "steps600-lr0.001-bs16-warm100-ck6/N2/training_log.json"
        process = start_cli(args)
        try:
            status = self.wait_for_glob("experiments/runs/icl_strategies-*/status/train@N=2.json")
            self.assertEqual(json.loads(status.read_text())["status"], "completed")
            for child in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split():
                os.kill(int(child), signal.SIGKILL)  # the worker dies mid-grid; the runner records it
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        self.assertEqual(process.returncode, 1, output)
        finished_at = first_log.stat().st_mtime_ns
        self.assertFalse((root / "steps600-lr0.001-bs16-warm100-ck6/N8/training_log.json").exists())

        result = self.cli("--jobs", "icl_strategies", *sets)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("skip icl_strategies/train@N=2", result.stdout)
        self.assertNotIn("skip icl_strategies/train@N=8", result.stdout)
        self.assertEqual(first_log.stat().st_mtime_ns, finished_at, "the finished cell was not retrained")
        analysis = next(root.glob("steps600-*/analysis-*"))
        summary = json.loads((analysis / "fit.json").read_text())
        self.assertEqual(summary["num_tasks"], [2, 4, 8])
        self.assertTrue((analysis / "posterior_odds.png").stat().st_size > 1000)


if __name__ == "__main__":
    unittest.main()
