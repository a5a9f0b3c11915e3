"""candidate_directions: planted directions, streaming == saved, resume, the file format, the headline."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import torch

from models.accumulators import Accumulator
from plugins.candidate_directions import DIRECTIONS, load_directions
from plugins.candidate_directions.directions import directions_from_accumulator, from_hidden_states, from_model
from plugins.common.extraction import Prompt, reduce_batches, save_hidden_states
from plugins.common.hidden_states import DATASET_FILE, HIDDEN_STATES_DIR, write_hidden_states
from runner.atomic import PARTIAL_SUFFIX
from tests.plugins.directions_support import (
    HUGINN, LLAMA, WorkspaceCase, context, failing, params_for, tiny_llama,
)
from tests.support import REPO_ROOT, limit_torch_threads, restore_torch_threads, slow

OUTPUTS = [f"{DIRECTIONS}.safetensors", f"{DIRECTIONS}.json", f"{DIRECTIONS}.png"]
setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def layers_of(keys):
    return [{"key": k, "name": str(k)} for k in keys]


class TestPlanted(unittest.TestCase):
    def test_planted_direction_in_synthetic_hidden_states(self):
        g = torch.Generator().manual_seed(0)
        n, hidden = 2000, 32
        planted = torch.randn(hidden, generator=g)
        labels = ["reasoning" if i % 3 else "memorizing" for i in range(n)]
        is_r = torch.tensor([1.0 if label == "reasoning" else 0.0 for label in labels]).unsqueeze(1)
        values = {"embed": torch.randn(n, hidden, generator=g) + 5.0,
                  0: torch.randn(n, hidden, generator=g) - 1.0 + is_r * planted,
                  1: torch.randn(n, hidden, generator=g) + 3.0 + is_r * 2 * planted}
        with tempfile.TemporaryDirectory() as tmp:
            hs = write_hidden_states(Path(tmp) / "hs", values, labels, shard_size=64, model="synthetic")
            result = directions_from_accumulator(hs.accumulator(), layers_of(hs.layers))
        for key in (0, 1):
            self.assertGreater(cosine(result[key]["direction"], planted), 0.99)
            self.assertAlmostEqual(float(result[key]["unit_direction"].norm()), 1.0, places=6)
            self.assertAlmostEqual(float(result[key]["scaled_direction"].norm()),
                                   float(result[key]["overall_mean"].norm()), places=4)
        self.assertLess(abs(cosine(result["embed"]["direction"], planted)), 0.5)

    def test_planted_offset_on_one_class_embeddings_of_a_tiny_model(self):
        """Reasoning prompts use a copy of the vocabulary whose embeddings are shifted by ``planted``."""
        model = tiny_llama(vocab=64, seed=3)
        g = torch.Generator().manual_seed(1)
        planted = torch.randn(16, generator=g) * 2
        with torch.no_grad():
            weight = model.get_input_embeddings().weight
            weight[34:64] = weight[4:34] + planted  # token t + 30 = token t shifted
        prompts = []
        for i in range(120):
            length = int(torch.randint(3, 12, (1,), generator=g))
            tokens = torch.randint(4, 34, (length,), generator=g).tolist()
            reasoning = i % 2 == 0
            ids = [0] + [t + 30 for t in tokens] if reasoning else [0] + tokens
            prompts.append(Prompt(i, "", "reasoning" if reasoning else "memorizing", ids))
        prompts.sort(key=lambda p: -len(p.ids))

        class Tok:
            pad_token_id = 2

        for mode in ("FIRST_ANSWER_TOKEN", "ALL_TOKENS"):
            for side in ("left", "right"):
                acc = Accumulator()
                for batch, values in reduce_batches(model, Tok(), prompts, mode, 16, padding_side=side):
                    acc.update(values, [p.label for p in batch])
                result = directions_from_accumulator(acc, layers_of(["embed", 0]))
                with self.subTest(mode=mode, side=side):
                    self.assertGreater(cosine(result["embed"]["direction"], planted), 0.99)


class TestStreamingEqualsSaved(WorkspaceCase):
    def streamed(self, params, name="stream"):
        ctx = context(self.ws, "plugins.candidate_directions.directions:from_model", params, [DATASET_FILE],
                      OUTPUTS, name=name)
        from_model(ctx)
        return ctx

    def test_streaming_equals_saved_hidden_states(self):
        for model in (LLAMA, HUGINN):
            for mode in ("FIRST_ANSWER_TOKEN", "ALL_TOKENS"):
                for side in ("left", "right"):
                    params = params_for(model=model, mode=mode, padding_side=side, batch_size=5, shard_size=8,
                                        dtype="float32")
                    with self.subTest(model=model, mode=mode, side=side):
                        streamed = load_directions(self.streamed(params).writes[0])
                        hs_ctx = context(self.ws, "save", params, [DATASET_FILE], [HIDDEN_STATES_DIR],
                                         name="hs-" + side)
                        save_hidden_states(hs_ctx)
                        ctx = context(self.ws, "saved", params, [HIDDEN_STATES_DIR], OUTPUTS, name="saved")
                        from_hidden_states(ctx)
                        saved = load_directions(ctx.writes[0])
                        self.assertEqual(saved["layers"], streamed["layers"])
                        for kind in ("reasoning_mean", "memorizing_mean", "overall_mean", "direction"):
                            for key in saved["layers"]:
                                torch.testing.assert_close(saved[kind][key], streamed[kind][key],
                                                           rtol=1e-4, atol=1e-5)

    @slow
    def test_two_processes_merge_to_the_single_process_directions(self):
        for model in (HUGINN,):  # per-prompt seeded initial states: the strictest case
            params = params_for(model=model, batch_size=4, dtype="float32")
            with self.subTest(model=model):
                single = load_directions(self.streamed(params, name=f"single-{model}").writes[0])
                parallel_ctx = self.streamed({**params, "num_processes": 2}, name=f"parallel-{model}")
                parallel = load_directions(parallel_ctx.writes[0])
                self.assertEqual(parallel["layers"], single["layers"])
                self.assertEqual(parallel["meta"]["counts"], single["meta"]["counts"])
                self.assertEqual(parallel["meta"]["num_processes"], 2)
                for kind in ("reasoning_mean", "memorizing_mean", "overall_mean", "direction"):
                    for key in single["layers"]:
                        torch.testing.assert_close(parallel[kind][key], single[kind][key], rtol=1e-5, atol=1e-6)

    def test_file_format_and_api(self):
        params = params_for(model=HUGINN, mode="ALL_TOKENS", batch_size=4, dtype="float32")
        ctx = self.streamed(params)
        path, sidecar_path, png = ctx.writes
        self.assertTrue(str(path).endswith("candidate_directions/tiny-huginn/mmlu-pro-3000samples/"
                                           "ALL_TOKENS@dtype=float32.safetensors"))
        self.assertEqual(png.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
        d = load_directions(path)
        self.assertEqual(d["layers"], ["embed", *range(8)])  # 1 prelude + 2 x 3 steps + 1 coda
        for kind in ("reasoning_mean", "memorizing_mean", "overall_mean", "direction", "unit_direction",
                     "scaled_direction"):
            self.assertEqual(set(d[kind]), set(d["layers"]))
            self.assertEqual(tuple(d[kind][4].shape), (16,))
            self.assertEqual(d[kind][4].dtype, torch.float32)
        torch.testing.assert_close(d["direction"][4], d["reasoning_mean"][4] - d["memorizing_mean"][4])
        self.assertAlmostEqual(float(d["scaled_direction"][4].norm()), float(d["overall_mean"][4].norm()), places=3)
        meta = json.loads(sidecar_path.read_text())
        self.assertEqual(meta["kind"], "candidate_directions")
        self.assertEqual(meta["counts"]["total"], meta["counts"]["reasoning"] + meta["counts"]["memorizing"])
        self.assertEqual(meta["layers"][2], {"key": 1, "name": "core.0@step0"})
        self.assertEqual(d["meta"]["source"], "model")

    def test_killed_stream_resumes_from_its_checkpoint(self):
        params = params_for(model=LLAMA, batch_size=3, checkpoint_seconds=0.0, dtype="float32")
        ctx = context(self.ws, "plugins.candidate_directions.directions:from_model", params, [DATASET_FILE],
                      OUTPUTS, name="resume")
        with self.assertRaises(KeyboardInterrupt):
            from_model(failing(ctx, 4))
        self.assertFalse(ctx.writes[0].exists())
        with self.assertLogs("latentrun", "INFO") as logs:
            from_model(ctx)
        self.assertTrue(any("resuming after 12 of 24 prompts" in line for line in logs.output), logs.output)
        resumed = load_directions(ctx.writes[0])
        ctx.checkpoint.clear()
        fresh = load_directions(self.streamed({**params, "batch_size": 24}, name="fresh").writes[0])
        for key in fresh["layers"]:
            torch.testing.assert_close(resumed["direction"][key], fresh["direction"][key], rtol=1e-4, atol=1e-5)
        self.assertEqual(resumed["meta"]["counts"], fresh["meta"]["counts"])


HEADLINE = ["--jobs", "mmlu_pro_save_candidate_directions"]
EXAMPLE = REPO_ROOT / "workspace.example"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTRUN_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _children(pid: int) -> list[int]:
    out = []
    for path in Path("/proc").glob(f"{pid}/task/*/children"):
        out += [int(x) for x in path.read_text().split()]
    return out


@unittest.skipUnless((EXAMPLE / "transformers" / "tiny-huginn-0125" / "config.json").exists(),
                     "workspace.example has no tiny-huginn-0125 yet")
class TestHeadline(unittest.TestCase):
    """``python runner/main.py --jobs mmlu_pro_save_candidate_directions --workspace_path workspace.example``."""

    @slow
    def test_headline_runs_resumes_after_sigkill_and_leaves_no_partial_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            shutil.copytree(EXAMPLE, ws, ignore=shutil.ignore_patterns("experiments"))
            command = [sys.executable, str(REPO_ROOT / "runner" / "main.py"), *HEADLINE, "--workspace_path", str(ws),
                       "--set", "checkpoint_seconds=0", "--set", "batch_size=4"]
            process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, start_new_session=True)
            checkpoints = ws / "experiments" / "checkpoints" / "mmlu_pro_save_candidate_directions"
            deadline = time.monotonic() + 120
            while not list(checkpoints.glob("*/accumulator.safetensors")):
                if time.monotonic() > deadline or process.poll() is not None:
                    if process.poll() is None:
                        os.killpg(process.pid, signal.SIGKILL)
                    self.fail(f"no checkpoint appeared:\n{process.communicate()[0]}")
                time.sleep(0.02)
            workers = _children(process.pid)
            self.assertTrue(workers, "the sub-job runs in a worker process")
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=60)
            self.assertEqual(process.returncode, 1, output)
            target = (ws / "experiments/candidate_directions/huginn-0125/mmlu-pro-3000samples/"
                      "FIRST_ANSWER_TOKEN.safetensors")
            self.assertFalse(target.exists())

            resumed = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
            self.assertEqual(resumed.returncode, 0, resumed.stdout + resumed.stderr)
            self.assertIn("resuming after", resumed.stdout)
            partials = [str(p) for p in (ws / "experiments").rglob(f"*{PARTIAL_SUFFIX}")]
            self.assertEqual(partials, [])
            d = load_directions(target)
            fresh = subprocess.run([*command[:-4], "--force"], env=_env(), capture_output=True, text=True,
                                   timeout=300)
            self.assertEqual(fresh.returncode, 0, fresh.stdout + fresh.stderr)
            straight = load_directions(target)
            for key in d["layers"]:
                torch.testing.assert_close(d["direction"][key], straight["direction"][key], rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    unittest.main()
