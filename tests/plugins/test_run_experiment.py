"""run_experiment: option log-probs by hand, config = params, revision sweep, stimulus errors, resume."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import tempfile
import unittest
from pathlib import Path

import torch

from plugins.run_experiment.config import ConfigError, check, config_files, read_config, resolve
from plugins.run_experiment.prompts import (
    CRT_PROMPT, cell_matches, clean_response, label_response, parse_cell, render_choice, render_matrix,
)
from plugins.run_experiment.stimuli import (
    DEFAULT_FILES, StimulusError, import_digit_mat_npz, load_digit_mat, load_stimuli,
)
from tests.support import REPO_ROOT, limit_torch_threads, restore_torch_threads, slow

EXAMPLE_WS = REPO_ROOT / "workspace.example"
BPE_TOKENIZER = EXAMPLE_WS / "transformers" / "tiny-llama-3-8b"  # byte-level BPE: leading spaces live in tokens
setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads


def random_model(seed: int = 0):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(BPE_TOKENIZER)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tok


def run(args: list[str]) -> tuple[int, str]:
    from runner.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(args)
    return code, out.getvalue()


class TestOptionLogprob(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model, cls.tok = random_model()

    def by_hand(self, context_ids: list[int], option_ids: list[int]) -> list[float]:
        """Per-token log-probs of the option from one forward over BOS + context + option."""
        ids = torch.tensor([[self.tok.bos_token_id] + context_ids + option_ids])
        with torch.no_grad():
            logp = torch.log_softmax(self.model(ids).logits[0].float(), -1)
        start = 1 + len(context_ids)
        return [float(logp[start + i - 1, t]) for i, t in enumerate(option_ids)]

    def test_multi_token_option_is_the_sum_of_its_token_logprobs(self):
        from models.scoring import score_choices_detailed

        prompt = CRT_PROMPT.format(question="A box and a cookie together cost $1.40. How much does the cookie cost?")
        options = [" $0.20", " $0.40", " 20 minutes"]
        scores = score_choices_detailed(self.model, self.tok, [prompt], [options])[0]
        context_ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        for option, score in zip(options, scores):
            option_ids = self.tok(option, add_special_tokens=False)["input_ids"]
            self.assertGreater(len(option_ids), 1, option)  # really multi-token
            # byte-level BPE: the leading space is inside the option's first token, never left in the context
            self.assertTrue(self.tok.convert_ids_to_tokens(option_ids[0]).startswith("Ġ"))
            self.assertEqual(context_ids + option_ids, self.tok(prompt + option, add_special_tokens=False)["input_ids"])
            expected = self.by_hand(context_ids, option_ids)
            self.assertEqual(score.token_ids, option_ids)
            self.assertAlmostEqual(score.sum, sum(expected), places=4)
            self.assertAlmostEqual(score.mean, sum(expected) / len(expected), places=4)
            # a trailing space in the prompt moves into the option when the tokenizer merges it into the
            # option's first token: the same tokens, the same number
            moved = score_choices_detailed(self.model, self.tok, [prompt + " "], [[option[1:]]])[0][0]
            if len(self.tok.convert_ids_to_tokens(option_ids[0])) > 1:
                self.assertEqual(moved.token_ids, option_ids)
                self.assertAlmostEqual(moved.sum, score.sum, places=4)
            else:  # a bare-space token stays in the context: scored as context, not as the option
                self.assertEqual(moved.token_ids, option_ids[1:])

    def test_digit_matrix_options_continue_the_open_bracket(self):
        from models.scoring import score_choices_detailed

        grid = [[[1, 2], [1, 2], [1, 2]], [[3, 4], [3, 4], [3, 4]], [[5, 6], [5, 6], [5, 6]]]
        prompt = render_matrix(grid)
        self.assertTrue(prompt.endswith("[5 6] [5 6] ["))
        option = render_choice([5, 6])
        self.assertEqual(option, "5 6]")
        score = score_choices_detailed(self.model, self.tok, [prompt], [[option]])[0][0]
        whole = self.tok(prompt + option, add_special_tokens=False, return_offsets_mapping=True)
        # the option's tokens are those covering its characters; here the boundary falls between tokens
        option_ids = [i for i, (a, b) in zip(whole["input_ids"], whole["offset_mapping"]) if b > len(prompt)]
        context_ids = whole["input_ids"][: len(whole["input_ids"]) - len(option_ids)]
        self.assertEqual(score.token_ids, option_ids)
        self.assertAlmostEqual(score.sum, sum(self.by_hand(context_ids, option_ids)), places=4)

    def test_greedy_generation_batched_equals_one_by_one(self):
        from models.scoring import generate_greedy, score_continuations_detailed

        prompts = ["[1 2] [1 2] [1 2]\n[", "Question: How long does it take?\nAnswer:", "The"]
        batched = generate_greedy(self.model, self.tok, prompts, 5, batch_size=3)
        for prompt, gen in zip(prompts, batched):
            alone = generate_greedy(self.model, self.tok, [prompt], 5)[0]
            self.assertEqual(gen.token_ids, alone.token_ids)
            self.assertAlmostEqual(gen.sum_logprob, alone.sum_logprob, places=4)
        # the log-prob a generation reports is the scorer's log-prob of the same tokens
        scored = score_continuations_detailed(self.model, self.tok, prompts[:1], [batched[0].text])[0]
        if scored.token_ids == batched[0].token_ids:
            self.assertAlmostEqual(scored.sum, batched[0].sum_logprob, places=4)
            self.assertTrue(scored.is_greedy)


class TestAnswerExtraction(unittest.TestCase):
    def test_digit_cells(self):
        self.assertEqual(parse_cell("3 5] [1"), [3, 5])
        self.assertIsNone(parse_cell("3 x]"))
        self.assertIsNone(parse_cell("3 5"))  # never closed
        self.assertTrue(cell_matches([5, 3], [3, 5], perm_invariant=True))
        self.assertFalse(cell_matches([5, 3], [3, 5], perm_invariant=False))

    def test_crt_labels(self):
        options = {"correct": "$0.05", "intuitive": "$0.10", "correct_alt": "$0.050"}
        self.assertEqual(clean_response(" $0.05. The ball costs five cents.\nQuestion:"), "$0.05")
        self.assertEqual(label_response("$0.10", options), "intuitive")
        self.assertEqual(label_response("It costs 0.05 dollars", options), "correct")
        self.assertEqual(label_response("no idea", options), "other")


class TestStimulusErrors(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def test_missing_column_names_file_and_header(self):
        path = self.write("blimp.csv", "good_sentence,category,item_id\nA dog ran.,agreement,0\n")
        with self.assertRaises(StimulusError) as err:
            load_stimuli("blimp", path)
        self.assertIn(str(path), str(err.exception))
        self.assertIn("line 1 (header): missing column(s) bad_sentence", str(err.exception))

    def test_empty_options_name_every_bad_row(self):
        header = "condition,item_id,question,total_cost,more,correct,intuitive,t\n"
        path = self.write("crt.csv", header + "crt2,1,How long?,,,5 hours,1 hour,\n"
                                               "crt2,2,How long?,,,,2 hours,\n"
                                               "crt2,3,How long?,,,7 days,,\n")
        with self.assertRaises(StimulusError) as err:
            load_stimuli("crt", path, "crt2")
        text = str(err.exception)
        self.assertIn(str(path), text)
        self.assertIn("line 3 (item 2): empty correct", text)
        self.assertIn("line 4 (item 3): empty intuitive", text)
        self.assertNotIn("line 2", text)
        crt1 = self.write("crt1.csv", header + "crt1,1,A and B cost $1.10,,1,$0.05,$0.10,\n")
        with self.assertRaisesRegex(StimulusError, r"line 2: column 'total_cost' is empty"):
            load_stimuli("crt", crt1, "crt1")

    def test_ragged_rows_and_bad_json(self):
        path = self.write("dgl.csv", "item_id,phenomenon,test_item,original_condition,sentence_grammatical,"
                                     "sentence_ungrammatical\n0,Anaphora,TS 1,grammatical,He saw himself\n")
        with self.assertRaisesRegex(StimulusError, "line 2: 6 columns expected"):
            load_stimuli("dgl", path)
        lam = self.write("lambada.jsonl", '{"text": "one two three"}\nnot json\n{"text": "x"}\n')
        with self.assertRaises(StimulusError) as err:
            load_stimuli("lambada", lam)
        self.assertIn("line 2: not a JSON object", str(err.exception))
        self.assertIn("line 3: 'text' must be a passage", str(err.exception))

    def test_digit_mat_import_round_trip(self):
        import numpy as np

        probs = np.array([[[[1, 2]] * 3, [[3, 4]] * 3, [[5, 6]] * 3]])
        choices = np.array([[[5, 6], [1, 1], [2, 2], [3, 3], [4, 4], [6, 6], [7, 7], [8, 8]]])
        published = {"row_constant": {"prob": probs, "answer_choices": choices, "correct_ind": np.array([0]),
                                      "perm_invariant": False}}
        npz = self.dir / "all_problems.npz"
        np.savez(npz, all_problems=np.array(published, dtype=object))
        counts = import_digit_mat_npz(npz, self.dir / "all_problems.json")
        self.assertEqual(counts, {"row_constant": 1})
        items = load_digit_mat(self.dir / "all_problems.json")
        self.assertEqual(items[0]["prob"], probs[0].tolist())
        self.assertEqual(items[0]["answer_choices"][items[0]["correct_ind"]], [5, 6])
        data = json.loads((self.dir / "all_problems.json").read_text())
        data["problems"]["row_constant"]["correct_ind"] = [9]
        (self.dir / "bad.json").write_text(json.dumps(data))
        with self.assertRaisesRegex(StimulusError, "problem 0: correct_ind 9 outside its 8 answer choices"):
            load_digit_mat(self.dir / "bad.json")


class TestConfig(unittest.TestCase):
    DEFAULTS = {"model": "", "task": "", "condition": "", "revision": "", "stimuli": "", "accelerate": False,
                "max_new_tokens": 0, "dtype": "float32", "batch_size": 8, "max_per_type": 40, "limit": 0}

    def test_config_and_params_resolve_alike_and_conflicts_are_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "crt1.yaml"
            path.write_text("task: crt\nmodel: org/some-model\ncondition: crt1\naccelerate: true\n"
                            "max_new_tokens: 100\nhf_token_path: src/hf_token.txt\n")
            from_config = resolve({**self.DEFAULTS, "config": str(path)}, self.DEFAULTS)
            plain = resolve({**self.DEFAULTS, "model": "org/some-model", "task": "crt", "condition": "crt1",
                             "accelerate": True, "max_new_tokens": 100}, self.DEFAULTS)
            self.assertEqual(from_config, plain)
            self.assertEqual(plain.model_slug, "org--some-model")
            with self.assertRaisesRegex(ConfigError, "task='blimp' but the config says 'crt'"):
                resolve({**self.DEFAULTS, "config": str(path), "task": "blimp"}, self.DEFAULTS)
            path.write_text("task: crt\nmodle: x\n")
            with self.assertRaisesRegex(ConfigError, "unknown key 'modle'"):
                read_config(path)

    def test_bad_combinations(self):
        with self.assertRaisesRegex(ConfigError, "task crt needs condition"):
            check({**self.DEFAULTS, "model": "m", "task": "crt"})
        with self.assertRaisesRegex(ConfigError, "task blimp has no conditions"):
            check({**self.DEFAULTS, "model": "m", "task": "blimp", "condition": "crt1"})
        self.assertEqual(check({**self.DEFAULTS, "model": "m", "task": "lambada", "revision": "main"}).revision, "")

    def test_make_configs_layout(self):
        files = config_files(["org/big-model", "tiny"], ["digit_mat", "crt"], accelerate_models=["big-model"])
        self.assertEqual(sorted(files), ["crt/crt1/big-model.yaml", "crt/crt1/tiny.yaml", "crt/crt2/big-model.yaml",
                                         "crt/crt2/tiny.yaml", "crt/crt3/big-model.yaml", "crt/crt3/tiny.yaml",
                                         "digit_mat/big-model.yaml", "digit_mat/tiny.yaml"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.yaml"
            path.write_text(files["crt/crt2/big-model.yaml"])
            s = resolve({**self.DEFAULTS, "config": str(path)}, self.DEFAULTS)
            self.assertEqual((s.model, s.task, s.condition, s.accelerate), ("org/big-model", "crt", "crt2", True))
            path.write_text(files["digit_mat/tiny.yaml"])
            self.assertEqual(resolve({**self.DEFAULTS, "config": str(path)}, self.DEFAULTS).max_new_tokens, 10)


def make_workspace(root: Path) -> Path:
    """A workspace with a random tiny model (final + revisions/step1), the example stimuli, cut short."""
    ws = root / "ws"
    for task in ("blimp", "crt", "digit_mat"):
        target = ws / DEFAULT_FILES[task]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE_WS / DEFAULT_FILES[task], target)
    for folder, seed in (("rand", 0), ("rand/revisions/step1", 1)):
        model, tok = random_model(seed)
        model.save_pretrained(ws / "transformers" / folder)
        tok.save_pretrained(ws / "transformers" / folder)
    return ws


class TestJobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.ws = make_workspace(Path(cls._tmp.name))

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def common(self) -> list[str]:
        return ["--workspace_path", str(self.ws), "--inline"]

    def test_missing_checkpoint_and_bad_params_are_reported_before_running(self):
        code, out = run(["--jobs", "run_experiment", "--set", "model=rand", "--set", "task=blimp",
                         "--set", "revision=step1,step99", *self.common(), "--dry-run"])
        self.assertEqual(code, 2, out)
        self.assertIn("transformers/rand/revisions/step99", out)
        self.assertNotIn("revisions/step1 ", out)
        code, out = run(["--jobs", "run_experiment", "--set", "model=rand", "--set", "task=crt", *self.common()])
        self.assertEqual(code, 2, out)
        self.assertIn("task crt needs condition one of crt1, crt2, crt3", out)
        self.assertNotIn("completed", out)  # nothing ran

    def test_make_configs_and_import_jobs(self):
        out_dir = "experiments/run_experiment/configs"
        code, out = run(["--jobs", "make_configs", "--set", "models=rand", "--set", "tasks=blimp,crt", *self.common()])
        self.assertEqual(code, 0, out[-3000:])
        written = sorted(str(p.relative_to(self.ws / out_dir)) for p in (self.ws / out_dir).rglob("*.yaml"))
        self.assertEqual(written, ["blimp/rand.yaml", "crt/crt1/rand.yaml", "crt/crt2/rand.yaml", "crt/crt3/rand.yaml"])
        code, out = run(["--jobs", "run_experiment", "--set", f"config={self.ws / out_dir / 'crt/crt3/rand.yaml'}",
                         *self.common(), "--dry-run"])
        self.assertEqual(code, 0, out[-3000:])
        self.assertIn("experiments/run_experiment/crt/crt3/rand.csv", out)
        code, out = run(["--jobs", "import_digit_mat", *self.common()])
        self.assertEqual(code, 2)
        self.assertIn("--set npz_path=", out)
        npz = EXAMPLE_WS / DEFAULT_FILES["digit_mat"].replace(".json", ".npz")
        code, out = run(["--jobs", "import_digit_mat", "--set", f"npz_path={npz}", "--set", "out=datasets/dm.json",
                         *self.common()])
        self.assertEqual(code, 0, out[-3000:])
        self.assertEqual(load_digit_mat(self.ws / "datasets/dm.json"),
                         load_digit_mat(EXAMPLE_WS / DEFAULT_FILES["digit_mat"]))

    @slow
    def test_config_equals_params_and_revision_sweep_writes_one_set_each(self):
        config = self.ws / "blimp-rand.yaml"
        config.write_text("task: blimp\nmodel: rand\n")
        limit = ["--set", "limit=6", "--set", "batch_size=4"]
        code, out = run(["--jobs", "run_experiment", "--set", f"config={config}", *limit, *self.common()])
        self.assertEqual(code, 0, out[-3000:])
        result = self.ws / "experiments/run_experiment/blimp/rand.csv"
        from_config = result.read_bytes()
        result.unlink()
        code, out = run(["--jobs", "run_experiment", "--set", "model=rand", "--set", "task=blimp", *limit,
                         *self.common()])
        self.assertEqual(code, 0, out[-3000:])
        self.assertEqual(result.read_bytes(), from_config)
        rows = list(csv.DictReader(io.StringIO(from_config.decode())))
        self.assertEqual(len(rows), 6)
        self.assertIn("meta_correct_lenient", rows[0])

        code, out = run(["--jobs", "run_experiment", "--set", "model=rand", "--set", "task=crt",
                         "--set", "condition=crt2", "--set", "revision=main,step1", "--set", "max_new_tokens=4",
                         *limit, *self.common()])
        self.assertEqual(code, 0, out[-3000:])
        folder = self.ws / "experiments/run_experiment/crt/crt2"
        self.assertEqual(sorted(p.name for p in folder.glob("*.csv")), ["rand.csv", "rand_step1.csv"])
        final, step1 = [json.loads((folder / n).read_text()) for n in ("rand.json", "rand_step1.json")]
        self.assertEqual((final["revision"], step1["revision"]), ("main", "step1"))
        self.assertNotEqual((folder / "rand.csv").read_text(), (folder / "rand_step1.csv").read_text())

    @slow
    def test_grid_writes_summary_and_plots(self):
        code, out = run(["--jobs", "task_demands_digit_mat", "--set", "models=rand",
                         "--set", "revisions=main,step1", "--set", "limit=5", *self.common()])
        self.assertEqual(code, 0, out[-3000:])
        summary = next((self.ws / "experiments/run_experiment/summary").glob("digit_mat_*"))
        self.assertTrue((summary / "digit_mat_by_model_size.png").stat().st_size > 0)
        self.assertTrue((summary / "digit_mat_by_training_tokens.png").stat().st_size > 0)
        rows = list(csv.DictReader(io.StringIO((summary / "summary.csv").read_text())))
        self.assertEqual({r["revision"] for r in rows}, {"main", "step1"})
        self.assertLessEqual({"generation", "forced choice"}, {r["measure"] for r in rows})
        self.assertIn("forced choice", (summary / "summary.md").read_text())


class TestExampleSignal(unittest.TestCase):
    @slow
    def test_trained_example_models_judge_grammar_directly(self):
        """The example models saw only grammatical sentences: their direct judgement is above chance."""
        models = ["tiny-demands-s", "tiny-demands-m"]
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp)
            for model in models:
                shutil.copytree(EXAMPLE_WS / "transformers" / model, ws / "transformers" / model,
                                ignore=shutil.ignore_patterns("revisions"))
            (ws / DEFAULT_FILES["blimp"]).parent.mkdir(parents=True)
            shutil.copy(EXAMPLE_WS / DEFAULT_FILES["blimp"], ws / DEFAULT_FILES["blimp"])
            code, out = run(["--jobs", "task_demands_blimp", "--workspace_path", str(ws), "--inline",
                             "--set", f"models={','.join(models)}", "--set", "limit=60"])
            self.assertEqual(code, 0, out[-3000:])
            for model in models:
                summary = json.loads((ws / f"experiments/run_experiment/blimp/{model}.json").read_text())
                direct = summary["measures"]["direct"]
                self.assertEqual(direct["n"], 60)
                self.assertGreater(direct["lo"], 0.5, (model, direct))


class TestResume(unittest.TestCase):
    def test_a_killed_run_resumes_from_its_checkpoint(self):
        """Evaluate 40 items in two chunks; a rerun with the first chunk checkpointed scores only the rest."""
        from plugins.run_experiment import steps, tasks
        from runner.context import CheckpointStore, SubJobContext
        from runner.jobs import DeviceMap
        from runner.workspace import Workspace

        with tempfile.TemporaryDirectory() as tmp:
            ws = make_workspace(Path(tmp))
            params = {**TestConfig.DEFAULTS, "model": "rand", "task": "blimp", "limit": 40, "batch_size": 16,
                      "seed": 0}

            def context(name: str) -> SubJobContext:
                out = ws / "experiments" / name
                return SubJobContext(job="run_experiment", subjob="evaluate", run_id=name, params=params,
                                     workspace=Workspace.open(ws), device_map=DeviceMap("cpu"), reads=[],
                                     writes=[out / "r.csv", out / "r.json"],
                                     checkpoint=CheckpointStore(ws / "experiments" / "checkpoints" / name))

            calls = []
            original = tasks.EVALUATORS["blimp"]

            def counting(model, tok, items, s):
                calls.append(len(items))
                return original(model, tok, items, s)

            tasks.EVALUATORS["blimp"] = counting
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    full = context("full")
                    steps.evaluate(full)
                    self.assertEqual(calls, [32, 8])
                    state = json.loads((full.checkpoint.folder / "rows.json").read_text())
                    killed = context("killed")  # as if killed after the first chunk
                    killed.checkpoint.save("rows", {"done": 32, "rows": state["rows"][:32]})
                    calls.clear()
                    steps.evaluate(killed)
            finally:
                tasks.EVALUATORS["blimp"] = original
            self.assertEqual(calls, [8])
            self.assertTrue(torch.is_grad_enabled())  # an in-process (--inline) run leaves global state alone
            self.assertEqual((ws / "experiments/killed/r.csv").read_text(), (ws / "experiments/full/r.csv").read_text())


if __name__ == "__main__":
    unittest.main()
