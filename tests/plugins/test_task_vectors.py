"""task_vector_patching: hook position, batched sweep = naive sweep, pass counts, task errors, real signal."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import unittest
from pathlib import Path

import torch

from models.capture import capture
from models.layers import get_layers
from models.patching import patch
from plugins.task_vector_patching import layout
from plugins.task_vector_patching.method import (
    decode_tokens, encode, first_token_predictions, patched_predictions, patched_predictions_naive, task_vectors,
)
from plugins.task_vector_patching.tasks import (
    ALGORITHMIC, DEFAULT_FORMAT, Task, TaskError, build_prompt, check_size, filter_single_token, is_correct,
    load_pairs, load_task, sample_datasets,
)
from tests.support import REPO_ROOT, limit_torch_threads, restore_torch_threads, slow

EXAMPLE_WS = REPO_ROOT / "workspace.example"
EXAMPLE_MODEL = EXAMPLE_WS / "transformers" / "tiny-icl-llama"
setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads


def tiny_random_model():
    """A 3-layer random Llama with the example model's word-level tokenizer (no ICL: checks mechanics only)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(EXAMPLE_MODEL)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tok


class CountForwards:
    """Counts model forwards and the sequence length each saw."""

    def __init__(self, model):
        self.lengths: list[int] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.lengths.append(int(ids.shape[-1]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


class TestMechanics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model, cls.tok = tiny_random_model()
        cls.task = filter_single_token(load_task("next_letter", None), cls.tok)
        cls.datasets = sample_datasets(cls.task, 6, 5, 1, seed=3)

    def test_replace_with_own_state_reproduces_logits(self):
        """θ from a full ICL prompt, patched into that prompt at the same layer and position: same logits."""
        prompt = build_prompt([tuple(d) for d in self.datasets[0]["demos"]], self.datasets[0]["query"][0])
        ids = torch.tensor(encode(self.tok, [prompt]))
        with torch.no_grad():
            clean = self.model(input_ids=ids).logits
            for layer in range(len(get_layers(self.model))):
                with capture(self.model, [layer], reduction="last") as cap:
                    self.model(input_ids=ids)
                with patch(self.model, {layer: cap.values[layer]}, mode="replace"):
                    patched = self.model(input_ids=ids).logits
                self.assertTrue(torch.equal(clean, patched), f"layer {layer}")
                with patch(self.model, {layer: cap.values[layer] + 1.0}, mode="replace"):
                    moved = self.model(input_ids=ids).logits
                self.assertTrue(torch.equal(clean[0, :-1], moved[0, :-1]))  # only the last position changes
                self.assertFalse(torch.equal(clean[0, -1], moved[0, -1]))
        # the batched, cached sweep agrees with the unpatched prediction too
        states = task_vectors(self.model, self.tok, [{"demos": self.datasets[0]["demos"],
                                                       "dummies": [self.datasets[0]["query"]]}], DEFAULT_FORMAT, "\n")
        layers = list(range(states.shape[1]))
        preds = patched_predictions(self.model, encode(self.tok, [prompt]), states, layers)
        self.assertEqual(preds[:, 0].tolist(), [int(clean[0, -1].argmax())] * len(layers))

    def test_patch_modes_rows_and_removal(self):
        ids = torch.tensor(encode(self.tok, ["example:a->", "example:b->"]))
        width = self.model.config.hidden_size
        v = torch.randn(width)
        with torch.no_grad():
            clean = self.model(input_ids=ids).logits
            with patch(self.model, {1: v}, mode="add", scale=0.0):
                same = self.model(input_ids=ids).logits
            self.assertTrue(torch.equal(clean, same))
            with patch(self.model, {1: v.unsqueeze(0)}, rows={1: [1]}, mode="add", scale=3.0):
                one = self.model(input_ids=ids).logits
            self.assertTrue(torch.equal(clean[0], one[0]))
            self.assertFalse(torch.equal(clean[1], one[1]))
            with self.assertRaises(RuntimeError):
                with patch(self.model, {1: v}, mode="replace"):
                    raise RuntimeError("boom")
            self.assertTrue(torch.equal(clean, self.model(input_ids=ids).logits))  # hooks gone after the error
        with self.assertRaises(ValueError):
            patch(self.model, {1: torch.randn(width + 1)})
        with self.assertRaises(ValueError):
            patch(self.model, {1: v}, mode="ablate")

    def test_fast_sweep_equals_naive(self):
        task = filter_single_token(load_task("list_last", None), self.tok)  # three prompt lengths
        datasets = sample_datasets(task, 9, 5, 2, seed=5)
        vectors = task_vectors(self.model, self.tok, datasets, DEFAULT_FORMAT, "\n", batch_size=4)
        seqs = encode(self.tok, [build_prompt([], ds["query"][0]) for ds in datasets])
        self.assertGreater(len({len(s) for s in seqs}), 1)
        layers = list(range(vectors.shape[1]))
        for mode, scale in (("replace", 1.0), ("add", 2.0)):
            fast = patched_predictions(self.model, seqs, vectors, layers, mode, scale, batch_size=4)
            naive = patched_predictions_naive(self.model, seqs, vectors, layers, mode, scale)
            self.assertTrue(torch.equal(fast, naive), mode)
            nocache = patched_predictions(self.model, seqs, vectors, layers, mode, scale, batch_size=4, use_cache=False)
            self.assertTrue(torch.equal(fast, nocache), mode)

    def test_one_demonstration_pass_per_task_vector(self):
        """Extraction: one forward per demonstration prompt; the sweep never re-runs a demonstration prompt."""
        n = len(self.datasets)
        query_len = len(encode(self.tok, ["example:a->"])[0])
        with CountForwards(self.model) as count:
            vectors = task_vectors(self.model, self.tok, self.datasets, DEFAULT_FORMAT, "\n", batch_size=1)
        self.assertEqual(len(count.lengths), n)  # one dummy query each: one pass per task vector
        self.assertTrue(all(length > query_len for length in count.lengths))
        layers = list(range(vectors.shape[1]))
        seqs = encode(self.tok, [build_prompt([], ds["query"][0]) for ds in self.datasets])
        with CountForwards(self.model) as count:
            patched_predictions(self.model, seqs, vectors, layers, batch_size=n)
        # one prefix pass for the batch, then only the last token per layer; no demonstration prompt
        self.assertEqual(count.lengths, [query_len - 1] + [1] * len(layers))


class TestTasks(unittest.TestCase):
    def test_missing_task_file_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(TaskError, r"datasets/task_vectors/linguistic/antonyms\.json is missing"):
                load_task("antonyms", Path(tmp))
            path = Path(tmp) / "datasets/task_vectors/knowledge/country_capital.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"France": "Paris", "Japan": "Tokyo"}))
            task = load_task("country_capital", Path(tmp))
            self.assertEqual(task.pairs, [("France", "Paris"), ("Japan", "Tokyo")])
            self.assertTrue(task.allow_prefix)
            path.write_text("[1, 2]")
            with self.assertRaisesRegex(TaskError, "one JSON object"):
                load_pairs(path)
        with self.assertRaisesRegex(TaskError, "unknown task 'nope'"):
            load_task("nope", None)

    def test_missing_task_file_stops_the_plan(self):
        from runner.main import main

        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp)
            (ws / "transformers" / "tiny-icl-llama").mkdir(parents=True)
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = main(["--jobs", "task_vectors_main", "--workspace_path", str(ws), "--dry-run",
                             "--set", "tasks=next_letter,antonyms"])
            self.assertEqual(code, 2)
            self.assertIn("datasets/task_vectors/linguistic/antonyms.json", out.getvalue())

    def test_too_few_examples_is_an_error(self):
        task = Task("tiny", "linguistic", [(c, c.upper()) for c in "abcdefg"])
        with self.assertRaisesRegex(TaskError, r"tiny.*7 usable examples, fewer than the 8"):
            check_size(task, 5, 2)
        with self.assertRaises(TaskError):
            sample_datasets(task, 3, 5, 2, seed=0)
        check_size(task, 4, 2)

    def test_datasets_keep_query_demos_and_dummies_apart(self):
        task = load_task("to_upper", None)
        for ds in sample_datasets(task, 20, 5, 2, seed=1):
            inputs = [d[0] for d in ds["demos"]] + [ds["query"][0]] + [d[0] for d in ds["dummies"]]
            self.assertEqual(len(set(inputs)), 8)
            self.assertTrue(all(task.mapping[x] == y for x, y in ds["demos"] + ds["dummies"]))
        self.assertEqual(sample_datasets(task, 5, 5, 2, seed=9), sample_datasets(task, 5, 5, 2, seed=9))

    def test_scoring_and_prompt(self):
        self.assertEqual(build_prompt([("a", "b")], "c"), "example:a->b\nexample:c->")
        self.assertTrue(is_correct(" b\n", "b"))
        self.assertFalse(is_correct("Par", "Paris"))
        self.assertTrue(is_correct("Par", "Paris", allow_prefix=True))
        self.assertFalse(is_correct("", "Paris", allow_prefix=True))

    def test_artifact_paths_follow_params(self):
        params = {"model": "m", "num_demos": 5, "num_dummy_queries": 2, "dev_size": 50, "test_size": 50,
                  "seed": 41, "patch_mode": "add", "scale": 4.0, "tasks": ALGORITHMIC}
        self.assertEqual(layout.sweep_file(params, "next_letter"),
                         "experiments/task_vectors/m/k5-dq2-dev50-test50-seed41/add-x4/next_letter.json")
        other = {**params, "patch_mode": "replace"}
        self.assertNotEqual(layout.report_files(params), layout.report_files(other))


@unittest.skipUnless(EXAMPLE_MODEL.exists(), "the example model is not in workspace.example")
class TestTrainedModel(unittest.TestCase):
    """Real signal: the committed tiny model does in-context learning; the additive task vector carries the task."""

    @slow
    def test_icl_and_additive_task_vector_beat_baseline(self):
        from models.loading import load_model
        from plugins.task_vector_patching.steps import additive_vectors

        model, tok = load_model(EXAMPLE_MODEL)
        model.eval()
        n = 30
        base, icl, dev_vectors, data = {}, {}, {}, {}
        for name in ALGORITHMIC:
            task = filter_single_token(load_task(name, None), tok)
            sets = sample_datasets(task, n, 5, 2, seed=f"test:{name}")
            data[name] = sets
            for store, prompts in ((base, [build_prompt([], ds["query"][0]) for ds in sets]),
                                   (icl, [build_prompt([tuple(d) for d in ds["demos"]], ds["query"][0]) for ds in sets])):
                words = decode_tokens(tok, first_token_predictions(model, tok, encode(tok, prompts)))
                store[name] = sum(is_correct(w, ds["query"][1]) for w, ds in zip(words, sets)) / n
            dev_vectors[name] = task_vectors(model, tok, sets, DEFAULT_FORMAT, "\n")
        additive = additive_vectors(dev_vectors)
        layers = list(range(len(get_layers(model))))
        best = {}
        for name in ALGORITHMIC:
            seqs = encode(tok, [build_prompt([], ds["query"][0]) for ds in data[name]])
            preds = patched_predictions(model, seqs, additive[name].expand(n, -1, -1), layers, "add", SCALE)
            best[name] = max(sum(is_correct(w, ds["query"][1]) for w, ds in zip(decode_tokens(tok, preds[j]), data[name]))
                             / n for j in layers)
        mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
        # measured (n=30 per task): baseline 0.49, ICL 1.00, additive task vector at its best layer 0.70
        self.assertGreater(mean(icl), mean(base) + 0.3, (base, icl))
        self.assertGreater(mean(best), mean(base) + 0.1, (base, best))


SCALE = 1.0  # the additive scale of the example commands (docs/plugins/task_vector_patching.md)


@unittest.skipUnless(EXAMPLE_MODEL.exists(), "the example model is not in workspace.example")
class TestJobs(unittest.TestCase):
    @slow
    def test_jobs_run_on_the_example_workspace(self):
        """The three jobs run end to end (small sizes) and write their tables and figures."""
        from runner.main import main

        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            (ws / "transformers").mkdir(parents=True)
            shutil.copytree(EXAMPLE_MODEL, ws / "transformers" / "tiny-icl-llama")
            common = ["--workspace_path", str(ws), "--inline", "--set", "tasks=next_letter,to_upper,list_last"]
            runs = [["--jobs", "task_vectors_main", "--set", "dev_size=8", "--set", "test_size=8",
                     "--set", "patch_mode=replace,add"],
                    ["--jobs", "task_vectors_robustness", "--set", "num_sets=6", "--set", "projection=pca"]]
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                for args in runs:
                    self.assertEqual(main(args + common), 0, out.getvalue()[-3000:])
                self.assertEqual(main(["--jobs", "task_vectors_conflicting", "--workspace_path", str(ws), "--inline",
                                       "--set", "pairs=next_letter:to_upper", "--set", "dev_size=8",
                                       "--set", "test_size=8"]), 0, out.getvalue()[-3000:])
            root = ws / "experiments" / "task_vectors" / "tiny-icl-llama"
            setting = root / "k5-dq2-dev8-test8-seed41"
            for mode in ("replace", "add-x1"):
                stem = setting / mode / "results_custom-"
                found = list((setting / mode).glob("results_custom-*.json"))
                self.assertEqual(len(found), 1, stem)
                res = json.loads(found[0].read_text())
                self.assertEqual([r["task"] for r in res["rows"]], ["next_letter", "to_upper", "list_last"])
                self.assertEqual(res["rows"][0]["icl"]["n"], 8)
                self.assertTrue(found[0].with_name(found[0].stem + "_by_layer.png").exists())
                self.assertTrue(found[0].with_suffix(".csv").exists())
            self.assertTrue(list((root / "conflicting").rglob("algorithmic.png")) or
                            list((root / "conflicting").rglob("*.png")))
            self.assertTrue(list((root / "robustness").rglob("*_projection.png")))
            # the add run reused the replace run's extraction (one extract per setting)
            self.assertIn("skip task_vectors_main/extract", out.getvalue())


    @slow
    def test_two_processes_extract_the_same_task_vectors_as_one(self):
        from safetensors.torch import load_file

        from runner.main import main

        vectors = {}
        with tempfile.TemporaryDirectory() as tmp:
            for world in (1, 2):
                ws = Path(tmp) / f"ws{world}"
                (ws / "transformers").mkdir(parents=True)
                shutil.copytree(EXAMPLE_MODEL, ws / "transformers" / "tiny-icl-llama")
                args = ["--jobs", "task_vectors_main", "--workspace_path", str(ws), "--inline", "--subjobs", "extract",
                        "--set", "tasks=next_letter,to_upper,list_last", "--set", "dev_size=4", "--set", "test_size=4",
                        "--set", f"num_processes={world}"]
                out = io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    self.assertEqual(main(args), 0, out.getvalue()[-3000:])
                files = sorted((ws / "experiments").rglob("task_vectors.safetensors"))
                self.assertEqual(len(files), 3)
                vectors[world] = {f.parent.name: load_file(str(f)) for f in files}
        self.assertEqual(sorted(vectors[1]), sorted(vectors[2]))
        for task, tensors in vectors[1].items():
            for split, value in tensors.items():
                torch.testing.assert_close(vectors[2][task][split], value, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    unittest.main()
