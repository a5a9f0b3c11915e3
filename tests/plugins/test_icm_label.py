"""icm_label: consistency rules, annealing, determinism, resume, backends, planted recovery, prefix reuse."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import random
import shutil
import tempfile
import threading
import unittest
from pathlib import Path

from plugins.icm_label import layout
from plugins.icm_label.arithmetic import split_questions, verification_claims
from plugins.icm_label.backends import BackendError, PlantedBackend, label_of
from plugins.icm_label.consistency import constraints, inconsistent
from plugins.icm_label.contexts import context_slots
from plugins.icm_label.search import Energy, SearchConfig, accept, consistency_fix, initial_state, run_batch
from plugins.icm_label.testbeds import TestbedError, get_testbed, parse_claims
from runner.workspace import Workspace
from tests.plugins.directions_support import context, failing
from tests.support import REPO_ROOT, slow

EXAMPLE = REPO_ROOT / "workspace.example"
EXAMPLE_MODEL = EXAMPLE / "transformers" / "tiny-icm-arith-sums-128x4-wd1"  # the example job's model
_THREADS: list[int] = []


def setUpModule() -> None:
    import torch

    _THREADS.append(torch.get_num_threads())
    torch.set_num_threads(1)  # tiny models: threads only add contention


def tearDownModule() -> None:
    import torch

    torch.set_num_threads(_THREADS.pop())


def bed(name):
    return get_testbed(name, extra=[])


def pairs(rules, labels):
    return {(r.a, r.b) for r in inconsistent(rules, labels)}


def arithmetic_claims(n_questions=16, seed=1):
    rng = random.Random(seed)
    questions, _ = split_questions(rng, n_questions, 0)
    return parse_claims(verification_claims(questions, rng), bed("gsm8k"), "generated")


# Claims of every built-in testbed: records, a labelling with contradictions planted at known pairs,
# those pairs, and gold labels that respect the rules (the planted backend's truth).
PLANTED = {
    "truthfulqa": ([{"question": "Capital of France?", "choice": "Paris", "consistency_id": 0},
                    {"question": "Capital of France?", "choice": "paris.", "consistency_id": 0},
                    {"question": "Capital of France?", "choice": "Lyon", "consistency_id": 0},
                    {"question": "Capital of Peru?", "choice": "Lima", "consistency_id": 1}],
                   [1, 0, 1, 1], {(0, 1)}, [1, 1, 0, 0]),
    "gsm8k": ([{"question": "2+3?", "choice": "2 + 3 = 5. #### 5", "consistency_id": 0},
               {"question": "2+3?", "choice": "so the answer is 5", "consistency_id": 0},
               {"question": "2+3?", "choice": "2 + 3 = 3", "answer": "3", "consistency_id": 0},
               {"question": "2+3?", "choice": "it is 7", "consistency_id": 0}],
              [1, 0, 1, 0], {(0, 1), (0, 2)}, [1, 1, 0, 0]),
    "alpaca": ([{"question": "Hi", "choice": "Hello!", "choice_2": "Go away.", "consistency_id": 0},
                {"question": "Hi", "choice": "Go away.", "choice_2": "Hello!", "consistency_id": 0},
                {"question": "Help", "choice": "Sure", "choice_2": "No", "consistency_id": 1},
                {"question": "Help", "choice": "No", "choice_2": "Sure", "consistency_id": 1}],
               [1, 1, 0, 0], {(0, 1), (2, 3)}, [1, 0, 1, 0]),
    "truthfulqa_preference": ([{"question": "Q", "choice": "A", "choice_2": "B", "consistency_id": 0},
                               {"question": "Q", "choice": "B", "choice_2": "A", "consistency_id": 0},
                               {"question": "R", "choice": "C", "choice_2": "D", "consistency_id": 1},
                               {"question": "R", "choice": "D", "choice_2": "C", "consistency_id": 1}],
                              [1, 0, 0, 0], {(2, 3)}, [1, 0, 0, 1]),
    "ethics": ([{"question": "I helped my neighbour carry groceries.", "consistency_id": 0},
                {"question": "I took my neighbour's groceries.", "consistency_id": 0},
                {"question": "I returned the wallet I found.", "consistency_id": 1},
                {"question": "I kept the wallet I found.", "consistency_id": 1}],
               [1, 1, 0, 0], {(0, 1)}, [1, 0, 1, 0]),
}


class TestTestbeds(unittest.TestCase):
    def test_rules_find_exactly_the_planted_contradictions_and_fix_removes_them(self):
        for name, (records, labels, expected, gold) in PLANTED.items():
            with self.subTest(testbed=name):
                testbed = bed(name)
                claims = parse_claims([dict(r, label=y) for r, y in zip(records, gold)], testbed, name)
                rules = constraints(testbed, claims)
                self.assertEqual(pairs(rules, labels), expected)
                self.assertEqual(pairs(rules, gold), set())
                energy = Energy(PlantedBackend(testbed, seed=0), claims, rules, SearchConfig())
                fixed, applied = consistency_fix(energy, labels, 10, random.Random(0))
                self.assertEqual(inconsistent(rules, fixed), [])
                self.assertGreaterEqual(applied, 1)

    def test_groups_and_keys_never_come_from_gold_labels(self):
        records = PLANTED["truthfulqa"][0] + PLANTED["gsm8k"][0]
        for name in ("truthfulqa", "gsm8k"):
            testbed = bed(name)
            a = constraints(testbed, parse_claims([dict(r, label=1) for r in records], testbed, "a"))
            b = constraints(testbed, parse_claims([dict(r, label=i % 2) for i, r in enumerate(records)], testbed, "b"))
            self.assertEqual(a, b)

    def test_published_records_read_as_they_are_and_names_are_forgiving(self):
        published = [{"question": "What is 1+1?", "choice": "2", "label": True, "consistency_id": 7,
                      "source": "truthfulQA", "extra": [1, 2]}]
        claims = parse_claims(published, get_testbed("truthfulQA", extra=[]), "train_truthfulqa.json")
        self.assertEqual((claims[0].label, claims[0].consistency_id, claims[0].record["extra"]), (1, "7", [1, 2]))
        self.assertEqual(get_testbed("truthfulQA-preference", extra=[]).name, "truthfulqa_preference")
        self.assertIn("I think this claim is ", bed("gsm8k").prompt(claims[0]))

    def test_malformed_data_lists_every_problem(self):
        records = [{"choice": "x", "consistency_id": 0}, "oops", {"question": "q", "choice": "c"},
                   {"question": "q", "choice": "c", "consistency_id": 1, "label": "maybe"}]
        with self.assertRaises(TestbedError) as caught:
            parse_claims(records, bed("truthfulqa"), "train.json")
        message = str(caught.exception)
        for expected in ("claim 0: missing question", "claim 1: not an object", "claim 2: missing consistency_id",
                         "claim 3: label must be"):
            self.assertIn(expected, message)
        with self.assertRaises(TestbedError):
            get_testbed("no-such-testbed", extra=[])

    def test_a_plugin_adds_a_testbed_through_the_hook(self):
        from runner.hookspecs import hookimpl
        from runner.pluginmanager import get_plugin_manager

        class Capitals:
            @hookimpl
            def latentrun_icm_testbeds(self):
                return [{"name": "capitals", "description": "capitals", "key": "normalised_choice",
                         "template": "Q: {question}\nA: {choice}\nThis is ", "equal_keys_agree": True,
                         "different_keys_not_both_true": True}]

        pm = get_plugin_manager()
        plugin = Capitals()
        pm.register(plugin, name="icm-test-capitals")
        try:
            testbed = get_testbed("capitals")
            claims = parse_claims([{"question": "France", "choice": c, "consistency_id": 0} for c in ("Paris", "Lyon")],
                                  testbed, "x")
            self.assertEqual(pairs(constraints(testbed, claims), [1, 1]), {(0, 1)})
        finally:
            pm.unregister(plugin)


class TestSearch(unittest.TestCase):
    def test_every_target_sees_every_other_labelled_claim_once(self):
        labels = [1, None, 0, 1, None, 0, 0, 1, 1, None, 0]
        for t in range(len(labels)):
            slots = context_slots(labels, t)
            self.assertEqual(sorted(slots), [s for s, y in enumerate(labels) if y is not None and s != t])

    def test_zero_temperature_never_accepts_a_loss_and_high_temperature_sometimes_does(self):
        rng = random.Random(0)
        self.assertFalse(any(accept(-d, 1e-12, rng) for d in (1e-6, 0.01, 1.0, 50.0) for _ in range(200)))
        self.assertGreater(sum(accept(-1.0, 100.0, rng) for _ in range(200)), 150)
        claims = arithmetic_claims(8)
        testbed = bed("gsm8k")
        rows = {}
        for name, (t0, t1) in {"cold": (1e-9, 1e-9), "hot": (1e4, 1e4)}.items():
            config = SearchConfig(K=120, seed=3, initial_T=t0, final_T=t1)
            state = run_batch(PlantedBackend(testbed, seed=1), testbed, claims, config, initial_state(claims, config, 0))
            rows[name] = [r for r in state["trajectory"] if r["changed"] and r["accepted"]]
        self.assertTrue(rows["cold"])
        self.assertTrue(all(r["delta"] >= 0 for r in rows["cold"]))
        self.assertTrue(any(r["delta"] < 0 for r in rows["hot"]))

    def test_planted_preferences_are_recovered_without_contradictions(self):
        claims = arithmetic_claims(16)
        testbed = bed("gsm8k")
        backend = PlantedBackend(testbed, strength=1.0, noise=2.0, seed=4)
        zero = [label_of(s) for s in backend.few_shot([], [], claims)]
        zero_acc = sum(y == c.label for y, c in zip(zero, claims)) / len(claims)
        config = SearchConfig(K=250, seed=11)
        state = run_batch(backend, testbed, claims, config, initial_state(claims, config, 0))
        labelled = [(y, c) for y, c in zip(state["labels"], claims) if y is not None]
        icm_acc = sum(y == c.label for y, c in labelled) / len(labelled)
        self.assertEqual(len(labelled), len(claims))
        self.assertEqual(state["final"]["inconsistent"], 0)
        self.assertLess(zero_acc, 0.8)         # the preferences alone are noisy ...
        self.assertGreaterEqual(icm_acc, 0.9)  # ... ICM recovers the planted labels (chance: 0.5)
        self.assertEqual(inconsistent(constraints(testbed, claims), zero) != [], True)

    def test_same_seed_same_labels(self):
        claims = arithmetic_claims(8)
        testbed = bed("gsm8k")
        runs = []
        for _ in range(2):
            config = SearchConfig(K=60, seed=5)
            runs.append(run_batch(PlantedBackend(testbed, seed=2), testbed, claims, config,
                                  initial_state(claims, config, 0)))
        self.assertEqual(runs[0]["labels"], runs[1]["labels"])
        self.assertEqual(runs[0]["trajectory"], runs[1]["trajectory"])


def planted_params(**overrides):
    from plugins.icm_label import check_params, icm_params

    params = {k: p.default for k, p in icm_params().items()}
    params.update(backend="planted", testbed="gsm8k", train_file="datasets/icm/train_gsm8k.json", K=40,
                  batch_size=16, checkpoint_every=5, seed=9)
    params.update(overrides)
    return check_params(params)


class TestSubJobs(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        root = Path(self.tmp.name) / "ws"
        (root / "datasets" / "icm").mkdir(parents=True)
        rng = random.Random(0)
        questions, _ = split_questions(rng, 8, 0)
        (root / "datasets" / "icm" / "train_gsm8k.json").write_text(json.dumps(verification_claims(questions, rng)))
        self.ws = Workspace.open(root)

    def tearDown(self):
        self.tmp.cleanup()

    def ctx(self, params, name="search"):
        files = layout.search_files(params)
        return context(self.ws, f"plugins.icm_label.steps:{name}", params, [params["train_file"]], list(files.values()),
                       name=name)

    def test_killed_and_resumed_search_ends_with_the_same_labels(self):
        from plugins.icm_label.steps import search

        params = planted_params()
        full = self.ctx(params)
        search(full)
        expected = full.writes[0].read_text(), full.writes[2].read_text()
        for path in full.writes:
            path.unlink()
        full.checkpoint.clear()
        killed = failing(self.ctx(params), fail_after=23)
        with self.assertRaises(KeyboardInterrupt):
            search(killed)
        self.assertFalse(killed.writes[0].exists())  # no partial output
        saved = killed.checkpoint.load("batch0")
        self.assertEqual(saved["iteration"], 20)
        resumed = self.ctx(params)
        search(resumed)
        self.assertEqual((resumed.writes[0].read_text(), resumed.writes[2].read_text()), expected)

    def test_malformed_file_fails_before_any_output(self):
        from plugins.icm_label.steps import search

        (self.ws.root / "datasets" / "icm" / "train_gsm8k.json").write_text('[{"question": "q"}, ')
        ctx = self.ctx(planted_params())
        with self.assertRaises(TestbedError) as caught:
            search(ctx)
        self.assertIn("not valid JSON", str(caught.exception))
        self.assertFalse(any(p.exists() for p in ctx.writes))

    def test_bad_params_are_refused_at_plan_time(self):
        from runner.main import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["--jobs", "icm_label", "--workspace_path", str(self.ws.root), "--dry-run",
                         "--set", "testbed=nope", "--set", "K=-1", "--set", "final_T=20"])
        self.assertEqual(code, 2)
        for expected in ("testbed 'nope' is unknown", "K must be >= 0", "final_T"):
            self.assertIn(expected, out.getvalue())


class TestReport(unittest.TestCase):
    def test_saying_false_to_everything_scores_the_false_share_but_half_balanced(self):
        from plugins.icm_label.steps import labelling_rows

        claims = arithmetic_claims(8)
        gold = [c.label for c in claims]
        rows = labelling_rows(bed("gsm8k"), claims, {"ICM": gold, "all false": [0] * len(claims)}, seed=0)
        self.assertEqual(rows[0]["balanced_accuracy"], 1.0)
        self.assertAlmostEqual(rows[1]["accuracy"]["acc"], 1 - sum(gold) / len(gold))
        self.assertEqual(rows[1]["balanced_accuracy"], 0.5)
        self.assertEqual(rows[1]["inconsistent"], 0)  # all false breaks no gsm8k rule


class _Stub(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if self.mode == "ok":
            choices = [{"index": i, "text": " True",
                        "logprobs": {"top_logprobs": [{" True": -0.2, "true": -3.0, " False": -2.0, "x": -1.0}]}}
                       for i, _ in enumerate(body["prompt"])]
        else:
            choices = [{"index": i, "text": " True", "logprobs": None} for i, _ in enumerate(body["prompt"])]
        data = json.dumps({"choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class TestOpenAIBackend(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.url = f"http://127.0.0.1:{cls.server.server_address[1]}/v1"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def backend(self, url=None, **kw):
        from plugins.icm_label.openai_backend import OpenAIBackend

        return OpenAIBackend(bed("gsm8k"), url or self.url, "base-model", max_retries=1, backoff=0.01, timeout=5,
                             request_batch=2, **kw)

    def test_top_logprobs_give_the_published_log_odds(self):
        import math

        _Stub.mode, _Stub.seen = "ok", []
        claims = arithmetic_claims(2)
        scores = self.backend().loo(claims, [1, 0, None, 1, 0, 1, None, 0], [0, 2, 5])
        want = math.log(1e-5 + math.exp(-0.2) + math.exp(-3.0)) - math.log(1e-5 + math.exp(-2.0))
        self.assertEqual(len(scores), 3)
        for s in scores:
            self.assertAlmostEqual(s, want, places=9)
        self.assertEqual([len(b["prompt"]) for b in _Stub.seen], [2, 1])
        self.assertEqual({(b["max_tokens"], b["logprobs"], b["temperature"]) for b in _Stub.seen}, {(1, 20, 0)})
        self.assertTrue(_Stub.seen[0]["prompt"][0].endswith("I think this claim is "))

    def test_no_logprobs_and_server_down_are_clear_errors(self):
        _Stub.mode = "none"
        with self.assertRaises(BackendError) as caught:
            self.backend().few_shot([], [], arithmetic_claims(1))
        self.assertIn("no top logprobs", str(caught.exception))
        with socket_closed() as port:
            backend = self.backend(f"http://127.0.0.1:{port}/v1")
            with self.assertRaises(BackendError) as caught:
                backend.few_shot([], [], arithmetic_claims(1))
        self.assertIn("cannot reach the completions server", str(caught.exception))
        self.assertEqual(backend.stats["requests"], 2)  # one try + one retry

    def test_search_subjob_with_the_server_down_writes_nothing(self):
        from plugins.icm_label.steps import search

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "datasets" / "icm").mkdir(parents=True)
            rng = random.Random(0)
            questions, _ = split_questions(rng, 4, 0)
            (root / "datasets" / "icm" / "train_gsm8k.json").write_text(json.dumps(verification_claims(questions, rng)))
            ws = Workspace.open(root)
            with socket_closed() as port:
                params = planted_params(backend="openai", api_base=f"http://127.0.0.1:{port}/v1", max_retries=0)
                files = list(layout.search_files(params).values())
                ctx = context(ws, "plugins.icm_label.steps:search", params, [params["train_file"]], files)
                with self.assertRaises(BackendError):
                    search(ctx)
            self.assertFalse(any(p.exists() for p in ctx.writes))


@contextlib.contextmanager
def socket_closed():
    """A local port with nothing listening on it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


class TestLocalBackend(unittest.TestCase):
    def test_prefix_reuse_gives_the_naive_scores_with_fewer_token_forwards(self):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from models.training import train_tokenizer
        from plugins.icm_label.local_backend import LocalBackend

        claims = arithmetic_claims(6)
        testbed = bed("gsm8k")
        tok = train_tokenizer([testbed.prompt(c) + w for c in claims for w in ("True", "False")], 300)
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048)
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval().double()
        labels = [random.Random(i).choice([0, 1, None]) for i in range(len(claims))]
        out = {}
        for reuse in (True, False):
            backend = LocalBackend(model, tok, testbed, prefix_reuse=reuse)
            loo = backend.loo(claims, labels, list(range(len(claims))))
            again = backend.loo(claims, labels, [5])
            shots = backend.few_shot(claims[:6], [1, 0, 1, 0, 0, 1], claims[6:10])
            out[reuse] = (loo, again, shots, backend.stats["token_forwards"])
        for a, b in zip(out[True][:3], out[False][:3]):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=0, atol=1e-9)
        self.assertLess(out[True][3] * 3, out[False][3])


class TestExampleCorpus(unittest.TestCase):
    """The example model's pretraining text labels other relations, never a sum or a held-out relation."""

    def test_only_the_labelled_kinds_are_ever_labelled_and_every_fact_is_true(self):
        import re

        from plugins.icm_label.arithmetic import FUNCTION_TABLES, labelled_claim_texts, relation_fact_texts

        rng = random.Random(3)
        labelled = "".join(labelled_claim_texts(rng, 300, ["max", "f9", "difference"]))
        claims = re.findall(r"Claim: (.+) = (\d+)\.\nI think this claim is (True|False)", labelled)
        self.assertGreater(len(claims), 1000)
        self.assertEqual({"-" if " - " in expr else expr.split("(")[0] for expr, _, _ in claims}, {"max", "f9", "-"})
        for expr, value, word in claims:
            if expr.startswith("f9("):
                right = FUNCTION_TABLES["f9"][int(expr[3])]
            elif expr.startswith("max("):
                right = max(int(d) for d in re.findall(r"\d", expr))
            else:
                a, b = (int(x) for x in expr.split(" - "))
                right = a - b
            self.assertEqual(word == "True", int(value) == right, (expr, value, word))
        facts = "\n".join(relation_fact_texts(rng, ["f9", "min"], 200))
        for expr, value in re.findall(r"(f9\(\d\)|min\(\d, \d\)) = (\d+)\.", facts):
            nums = [int(d) for d in re.findall(r"\d", expr[2:] if expr.startswith("f9") else expr)]
            right = FUNCTION_TABLES["f9"][nums[0]] if expr.startswith("f9") else min(nums)
            self.assertEqual(int(value), right, expr)
        self.assertNotIn("True", facts)

    def test_example_questions_are_the_questions_of_the_committed_claim_files(self):
        from plugins.icm_label.arithmetic import example_questions

        asked = set()
        for name in ("train_gsm8k.json", "test_gsm8k.json"):
            for record in json.loads((EXAMPLE / "datasets" / "icm" / "arithmetic" / name).read_text()):
                a, b = record["question"].removeprefix("What is ").removesuffix("?").split(" + ")
                asked.add((int(a), int(b)))
        self.assertEqual(asked, example_questions())

    def test_the_example_corpus_never_labels_an_asked_sum_or_a_held_out_relation(self):
        import re

        from plugins.icm_label.arithmetic import (
            CORPUS_RECIPES, UNLABELLED_KINDS, example_questions, labelled_relations_corpus,
        )

        asked = {f"{a} + {b}" for a, b in example_questions()}
        for recipe in CORPUS_RECIPES:
            with self.subTest(recipe=recipe):
                text = "\n".join(labelled_relations_corpus(random.Random(0), recipe))
                labelled = re.findall(r"Claim: (.+) = \d+\.\nI think this claim is (?:True|False)", text)
                self.assertGreater(len(labelled), 50000)
                self.assertFalse([e for e in labelled if e.split("(")[0] in UNLABELLED_KINDS])
                sums = {e for e in labelled if " + " in e}
                if "sum" in CORPUS_RECIPES[recipe]["labelled_kinds"]:  # only sums the claim files never ask
                    self.assertEqual(len(sums), 100 - len(asked))
                    self.assertFalse(sums & asked)
                else:
                    self.assertFalse(sums)
                held_out = [f"{k}(" for k in UNLABELLED_KINDS if k in CORPUS_RECIPES[recipe]["fact_kinds"]]
                for kind in [" + ", *held_out]:
                    self.assertIn(kind, text)  # ... but their true facts are there


@unittest.skipUnless(EXAMPLE_MODEL.exists(), "the example model is not in workspace.example")
class TestExampleJob(unittest.TestCase):
    @slow
    def test_icm_labels_the_example_claims_from_the_example_model_alone(self):
        """The example job as configured: ICM finds the gold labels of claims never labelled in pretraining."""
        from runner.main import main

        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            shutil.copytree(EXAMPLE / "datasets" / "icm", ws / "datasets" / "icm")
            shutil.copytree(EXAMPLE_MODEL, ws / "transformers" / EXAMPLE_MODEL.name)
            shutil.copy(EXAMPLE / "latentrun.toml", ws / "latentrun.toml")
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = main(["--jobs", "icm_label", "--workspace_path", str(ws), "--inline"])
            self.assertEqual(code, 0, out.getvalue()[-3000:])
            summary = json.loads(next((ws / "experiments").rglob("summary.json")).read_text())
            rows = {r["labelling"]: r for r in summary["rows"]}
            self.assertEqual(list(rows), ["ICM", "zero-shot", "random", "gold"])
            # measured: ICM 0.98 (47 of all 48 claims), 0 contradictions; random labels 0.35, 22 contradictions
            self.assertGreaterEqual(rows["ICM"]["labelled"], 40)
            self.assertGreaterEqual(rows["ICM"]["balanced_accuracy"], 0.85)
            self.assertEqual(rows["ICM"]["inconsistent"], 0)
            self.assertLess(rows["random"]["balanced_accuracy"], 0.7)
            downstream = json.loads(next((ws / "experiments").rglob("downstream-*.json")).read_text())
            self.assertEqual([r["condition"] for r in downstream["rows"]],
                             ["zero-shot", "random labels", "ICM labels", "gold labels"])
            self.assertEqual(downstream["rows"][0]["accuracy"]["n"], 100)
            self.assertTrue(list((ws / "experiments").rglob("trajectory.png")))


if __name__ == "__main__":
    unittest.main()
