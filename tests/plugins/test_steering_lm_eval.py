"""steering_per_layer, lm-eval: local task configs, steering inside HFLM batches, presets, errors, resume.

The behaviour tests use the example workspace's ``tiny-icl-llama`` (it solves
5-shot letter tasks in context) on a user task YAML (``task_paths``), so an
intervention has something to destroy; the local MMLU / MMLU-Pro / PIQA
configs are checked against the example workspace's published-layout data.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch

from plugins.steering_per_layer import jobs
from plugins.steering_per_layer.interventions import Intervention, InterventionError
from plugins.steering_per_layer.lm_eval_jobs import lm_eval_job
from plugins.steering_per_layer.lm_eval_tasks import LOGLIK, write_local_tasks
from runner.jobs import ParamError
from runner.workspace import Workspace
from tests.plugins.directions_support import context
from tests.support import REPO_ROOT, limit_torch_threads, restore_torch_threads, slow

EXAMPLE = REPO_ROOT / "workspace.example"
ICL = "tiny-icl-llama"
DIRECTIONS = "experiments/candidate_directions/{model}/mmlu-pro-3000samples/FIRST_ANSWER_TOKEN.safetensors"
setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads


def icl_task(root: Path, n: int = 24, seed: int = 0) -> None:
    """``W/tasks/icl_letters``: 5-shot next-letter prompts, 4 letter choices (a local lm-eval task)."""
    from plugins.task_vector_patching.tasks import build_prompt, load_task

    rng = random.Random(seed)
    task = load_task("next_letter", None)
    rows = []
    for _ in range(n):
        picked = rng.sample(task.pairs, 6)
        answer = picked[-1][1]
        wrong = rng.sample([y for _, y in task.pairs if y != answer], 3)
        choices = [answer] + wrong
        rng.shuffle(choices)
        rows.append({"text": build_prompt(picked[:-1], picked[-1][0]), "choices": choices,
                     "label": choices.index(answer)})
    folder = root / "tasks" / "icl_letters"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "icl_letters.yaml").write_text(json.dumps({
        "task": "icl_letters", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(folder / "test.jsonl")}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{text}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}))


def directions_for(ws: Workspace, model_dir: Path, name: str, seed: int = 0) -> Path:
    """A directions file (random unit directions, the model's hidden size) made 'for' ``name``."""
    from plugins.common.directions_format import complete, write_directions

    config = json.loads((model_dir / "config.json").read_text())
    width, n = config["hidden_size"], config["num_hidden_layers"]
    g = torch.Generator().manual_seed(seed)
    per_layer, layers = {}, []
    for k in range(n):
        d, m = torch.randn(width, generator=g, dtype=torch.float64), torch.randn(width, generator=g, dtype=torch.float64)
        per_layer[k] = {"direction": d, "overall_mean": m, **complete(d, m)}
        layers.append({"key": k, "name": f"layers.{k}"})
    path = ws.path(DIRECTIONS.format(model=name))
    write_directions(path, per_layer, layers, {"model": name, "hidden_size": width, "kind": "candidate_directions"})
    return path


def workspace(root: Path) -> Workspace:
    shutil.copytree(EXAMPLE / "transformers" / ICL, root / "transformers" / ICL)
    shutil.copytree(EXAMPLE / "datasets" / "TIGER-Lab", root / "datasets" / "TIGER-Lab")
    icl_task(root)
    ws = Workspace.open(root)
    directions_for(ws, root / "transformers" / ICL, ICL)
    return ws


def params(**overrides):
    job = lm_eval_job("t", "t", model=ICL, tasks=("icl_letters",))
    p = job.defaults() | {"task_paths": ["tasks"], "batch_size": 8, "bootstrap_iters": 10} | overrides
    for key, value in overrides.items():
        job.params[key].check(key, value)
    return job, p


def sub_context(ws: Workspace, **overrides):
    job, p = params(**overrides)
    sub = job.build_subjobs(p)[0]
    return context(ws, sub.function, {**p, **sub.params}, sub.reads, sub.writes, name="lm_eval_test")


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class TestLocalTasks(unittest.TestCase):
    """Local configs include lm-eval's own YAMLs and read the published layouts under W/datasets."""

    @classmethod
    def setUpClass(cls):
        from lm_eval.tasks import TaskManager

        cls.tmp = tempfile.TemporaryDirectory()
        cls.written = write_local_tasks(EXAMPLE, Path(cls.tmp.name), ["mmlu", LOGLIK, "piqa"])
        cls.manager = TaskManager(include_path=cls.tmp.name, include_defaults=False)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_groups_and_subtasks_are_the_published_names(self):
        names = set(self.manager.all_tasks)
        for name in ("mmlu", "mmlu_stem", "mmlu_high_school_geography", "mmlu_pro", "mmlu_pro_math",
                     "mmlu_pro_other", LOGLIK, f"{LOGLIK}_history", "piqa"):
            self.assertIn(name, names)
        self.assertEqual(len(self.written["mmlu_pro"]), 6)  # the example's categories, not all 14

    def test_builtin_semantics_and_local_rows(self):
        import pyarrow.parquet as pq
        from lm_eval.tasks import get_task_dict

        tasks = get_task_dict(["mmlu_pro_math", f"{LOGLIK}_math", "mmlu_high_school_geography", "piqa"],
                              self.manager)
        pro, loglik = tasks["mmlu_pro_math"], tasks[f"{LOGLIK}_math"]
        self.assertEqual(pro.config.output_type, "generate_until")  # 5-shot CoT generation, as built in
        self.assertEqual(pro.config.num_fewshot, 5)
        self.assertEqual(pro.config.generation_kwargs["max_gen_toks"], 2048)
        self.assertEqual(loglik.config.output_type, "multiple_choice")
        rows = pq.read_table(EXAMPLE / "datasets/TIGER-Lab/MMLU-Pro/data/test-00000-of-00001.parquet").to_pylist()
        math = [r for r in rows if r["category"] == "math"]
        docs = list(loglik.test_docs())
        self.assertEqual([d["question"] for d in docs], [r["question"] for r in math])
        self.assertEqual(loglik.doc_to_choice(docs[0]), math[0]["options"])
        self.assertEqual(loglik.doc_to_target(docs[0]), math[0]["answer_index"])
        geo = tasks["mmlu_high_school_geography"]
        geo_rows = pq.read_table(EXAMPLE / "datasets/cais/mmlu/high_school_geography/test-00000-of-00001.parquet")
        self.assertEqual(len(list(geo.test_docs())), geo_rows.num_rows)
        self.assertEqual(geo.doc_to_choice(next(iter(geo.test_docs()))), ["A", "B", "C", "D"])
        self.assertEqual(len(list(tasks["piqa"].validation_docs())), 200)

    def test_missing_or_foreign_data_is_a_clear_error(self):
        from plugins.steering_per_layer.lm_eval_tasks import LocalTaskError

        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(LocalTaskError, "TIGER-Lab/MMLU-Pro not found"):
                write_local_tasks(Path(tmp), Path(tmp) / "out", ["mmlu_pro"])
            folder = Path(tmp) / "datasets" / "cais" / "mmlu" / "anatomy"
            folder.mkdir(parents=True)
            (folder / "readme.txt").write_text("no data")
            with self.assertRaisesRegex(LocalTaskError, "cais/mmlu download"):
                write_local_tasks(Path(tmp), Path(tmp) / "out", ["mmlu"])


class TestPresets(unittest.TestCase):
    SEED = {  # preset -> (model, tasks, layers, extra settings) as research §2 lists them
        "mmlu_evaluate_lm_eval": ("huginn-0125", ["mmlu"], None, {"num_fewshot": 0}),
        "mmlu_evaluate_lm_eval_few_shots_1": ("huginn-0125", ["mmlu"], None, {"num_fewshot": 1}),
        "mmlu_evaluate_lm_eval_with_intervention": ("huginn-0125", ["mmlu"], [66], {}),
        "mmlu_evaluate_lm_eval_with_intervention_1": ("huginn-0125", ["mmlu"], [1], {}),
        "mmlu_evaluate_lm_eval_with_intervention_127": ("huginn-0125", ["mmlu"], [127], {}),
        "mmlu_evaluate_lm_eval_with_intervention_129": ("huginn-0125", ["mmlu"], [129], {}),
        "mmlu_evaluate_lm_eval_with_intervention_1_all_tokens": ("huginn-0125", ["mmlu"], [1],
                                                                 {"directions_mode": "ALL_TOKENS"}),
        "mmlu_evaluate_lm_eval_with_intervention_1_all_tokens_scale_with_overall_magnitude": (
            "huginn-0125", ["mmlu"], [1], {"direction_normalization_mode": "SCALE_WITH_OVERALL_MAGNITUDE"}),
        "mmlu_evaluate_lm_eval_with_intervention_scale_with_overall_magnitude_feature_amplification": (
            "huginn-0125", ["mmlu"], [66], {"modification_mode": "FEATURE_AMPLIFICATION",
                                            "direction_normalization_mode": "SCALE_WITH_OVERALL_MAGNITUDE"}),
        "mmlu_evaluate_lm_eval_with_intervention_use_linear_probes": (
            "huginn-0125", ["mmlu"], [31], {"direction_source": "linear_probes"}),
        "mmlu_evaluate_lm_eval_with_intervention_use_linear_probes_few_shots_1": (
            "huginn-0125", ["mmlu"], [31], {"direction_source": "linear_probes", "num_fewshot": 1}),
        "mmlu_pro_evaluate_lm_eval": ("huginn-0125", ["mmlu_pro"], None, {}),
        "mmlu_pro_evaluate_lm_eval_few_shots_1": ("huginn-0125", ["mmlu_pro"], None, {"num_fewshot": 1}),
        "mmlu_pro_evaluate_lm_eval_with_intervention": ("huginn-0125", ["mmlu_pro"], [66],
                                                        {"token_modification_mode": "LAST_TOKEN"}),
        "mmlu_pro_evaluate_lm_eval_with_intervention_129": ("huginn-0125", ["mmlu_pro"], [129],
                                                            {"token_modification_mode": "ALL_TOKENS"}),
        "evaluate_lm_eval_tasks_piqa": ("huginn-0125", ["piqa"], None, {"num_fewshot": 0}),
        "evaluate_lm_eval_tasks_piqa_use_linear_probes": ("huginn-0125", ["piqa"], [31], {
            "direction_source": "linear_probes", "token_modification_mode": "LAST_TOKEN"}),
        "evaluate_lm_eval_model_name_Meta-Llama-3-8B": ("Meta-Llama-3-8B", ["mmlu"], None, {}),
        "evaluate_lm_eval_model_name_Meta-Llama-3-8B_with_intervention_user_linear_probes": (
            "Meta-Llama-3-8B", ["mmlu"], [11], {"direction_source": "linear_probes",
                                                "token_modification_mode": "LAST_TOKEN"}),
        "evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B": ("Meta-Llama-3-8B", None, None, {}),
        "evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B_with_intervention_layer_indices_8_scale_-5e-2": (
            "Meta-Llama-3-8B", None, [8], {"hook_point": "pre+attn+mlp", "direction_layer_offset": -1, "scale": -0.05}),
        "evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B_with_intervention_layer_indices_2_scale_-5e-2": (
            "Meta-Llama-3-8B", None, [2], {"hook_point": "pre+attn+mlp", "direction_layer_offset": -1, "scale": -0.05}),
        "evaluate_accuracy_reasoning_memorizing_model_name_Meta-Llama-3-8B_with_intervention_use_linear_probes_with_"
        "hidden_states_post_hook_layer_indices_12_modification_mode_last_token_scale_-5e-2": (
            "Meta-Llama-3-8B", None, [11], {"hook_point": "post", "token_modification_mode": "LAST_TOKEN",
                                            "direction_source": "linear_probes", "scale": -0.05}),
    }

    def test_every_seed_preset_exists_and_does_what_its_name_says(self):
        by_name = {j.name: j for j in jobs()}
        for name, (model, tasks, layers, extra) in self.SEED.items():
            with self.subTest(name=name):
                self.assertIn(name, by_name)
                p = by_name[name].defaults()
                self.assertEqual(p["model"], model)
                if tasks is not None:
                    self.assertEqual(p["tasks"], tasks)
                self.assertEqual(p["with_intervention"], layers is not None)
                if layers is not None:
                    self.assertEqual(p["layer_indices"], layers)
                for key, value in extra.items():
                    self.assertEqual(p[key], value, key)
                by_name[name].build_subjobs(p)  # plans without loading anything

    def test_groups_run_all_their_presets_in_the_seeds_order(self):
        by_name = {j.name: j for j in jobs()}
        mmlu = by_name["mmlu"].group
        self.assertEqual(set(mmlu), {n for n in self.SEED if n.startswith("mmlu_evaluate_lm_eval")})
        pro = by_name["mmlu_pro"].group
        for name in [n for n in by_name if n.startswith("mmlu_pro_") and not by_name[n].is_group]:
            self.assertIn(name, pro)
        families = [next(i for i, f in enumerate(("analyze", "accuracy", "lm_eval")) if f in n) for n in pro]
        self.assertEqual(families, sorted(families))


class TestErrors(unittest.TestCase):
    def test_bad_values_fail_at_plan_time(self):
        job, p = params(with_intervention=True)
        with self.assertRaisesRegex(ParamError, "modification_mode"):
            job.params["modification_mode"].parse("modification_mode", "FEATURE_SUBTRACTION")
        with self.assertRaisesRegex(ParamError, "hook_point"):
            job.params["hook_point"].parse("hook_point", "attn+pre")
        with self.assertRaisesRegex(InterventionError, "modification_mode"):
            job.build_subjobs(p | {"modification_mode": "FEATURE_SUBTRACTION"})
        with self.assertRaisesRegex(InterventionError, "tasks is empty"):
            job.build_subjobs(p | {"tasks": []})

    def test_layer_out_of_range_and_foreign_directions_fail_before_loading(self):
        from plugins.steering_per_layer import lm_eval_run

        with tempfile.TemporaryDirectory() as tmp:
            ws = workspace(Path(tmp) / "ws")
            with mock.patch("plugins.common.extraction.load") as load:
                with self.assertRaisesRegex(InterventionError, r"\[9\] out of range.*0\.\.3"):
                    lm_eval_run.evaluate_lm_eval(sub_context(ws, with_intervention=True, layer_indices=[9]))
                sidecar = ws.path(DIRECTIONS.format(model=ICL)).with_suffix(".json")
                sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | {"model": "tiny-llama-3-8b"}))
                with self.assertRaisesRegex(InterventionError, "made for model 'tiny-llama-3-8b'"):
                    lm_eval_run.evaluate_lm_eval(sub_context(ws, with_intervention=True, layer_indices=[1]))
                load.assert_not_called()

    def test_missing_data_is_reported_at_plan_time(self):
        from runner.plan import PlanError, build_plan, validate

        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace.open(Path(tmp))
            by_name = {j.name: j for j in jobs()}
            runs = build_plan(["evaluate_lm_eval"], by_name, ws, {"tasks": "mmlu,piqa", "model": ICL})
            with self.assertRaises(PlanError) as caught:
                validate(runs, ws, by_name, check_devices=False)
            text = "\n".join(caught.exception.problems)
            for path in ("datasets/cais/mmlu", "datasets/ybisk/piqa", f"transformers/{ICL}"):
                self.assertIn(path, text)


class TestSeveralHookPoints(unittest.TestCase):
    """The seed's Llama presets steer a block's input, attention and MLP outputs with one direction."""

    def setUp(self):
        from tests.plugins.directions_support import tiny_llama

        self.model = tiny_llama(vocab=40, seed=2)
        g = torch.Generator().manual_seed(3)
        self.ids = torch.randint(3, 40, (2, 6), generator=g)
        self.units = {k: torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0) for k in range(3)}
        self.dirs = {"unit_direction": self.units, "overall_mean": {k: torch.randn(16, generator=g) for k in range(3)}}

    def outputs(self, iv=None):
        from models.layers import get_layers

        layer = get_layers(self.model)[2]
        seen = {}
        handles = [get_layers(self.model)[1].block.register_forward_hook(
                       lambda m, a, o: seen.__setitem__("post1", (o[0] if isinstance(o, tuple) else o).clone())),
                   layer.block.register_forward_pre_hook(lambda m, a: seen.__setitem__("pre", a[0].clone())),
                   layer.attention.register_forward_hook(lambda m, a, o: seen.__setitem__("attn", o[0].clone())),
                   layer.mlp.register_forward_hook(lambda m, a, o: seen.__setitem__("mlp", o.clone()))]
        try:
            with torch.no_grad():
                if iv is None:
                    self.model(input_ids=self.ids)
                else:
                    with iv.steer(self.model, self.dirs):
                        self.model(input_ids=self.ids)
        finally:
            for handle in handles:
                handle.remove()
        return seen

    def test_pre_attn_mlp_with_offset_adds_the_previous_layers_direction_at_each_point(self):
        hooks = hook_count(self.model)
        iv = Intervention.from_params(params(with_intervention=True, layer_indices=[2], hook_point="pre+attn+mlp",
                                             direction_layer_offset=-1, scale=0.5)[1])
        self.assertEqual(iv.direction_layers, (1,))
        steered = self.outputs(iv)
        self.assertEqual(hook_count(self.model), hooks)
        base = self.outputs()
        # the block input moved by exactly s·u(layer 1); attention and MLP outputs as well (after their inputs moved)
        torch.testing.assert_close(steered["pre"] - base["pre"], (0.5 * self.units[1]).expand_as(base["pre"]),
                                   atol=1e-5, rtol=0)
        attn_only = self.outputs(Intervention.from_params(params(with_intervention=True, layer_indices=[2],
                                                                 hook_point="pre", direction_layer_offset=-1,
                                                                 scale=0.5)[1]))
        torch.testing.assert_close(steered["attn"] - attn_only["attn"],
                                   (0.5 * self.units[1]).expand_as(base["attn"]), atol=1e-5, rtol=0)

    def test_amplification_scaled_with_the_overall_magnitude(self):
        def post(iv):
            return self.outputs(iv)["post1"]

        iv = Intervention.from_params(params(with_intervention=True, layer_indices=[1], scale=0.3,
                                             modification_mode="FEATURE_AMPLIFICATION",
                                             direction_normalization_mode="SCALE_WITH_OVERALL_MAGNITUDE")[1])
        base, steered = post(None), post(iv)
        u, m = self.units[1], self.dirs["overall_mean"][1]
        expected = base + 0.3 * float(m.norm()) * (base @ u).unsqueeze(-1) * u
        torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)


class TestSteeringInsideLmEval(unittest.TestCase):
    """One model, several lm-eval runs on the ICL task."""

    @classmethod
    def setUpClass(cls):
        from lm_eval.tasks import TaskManager

        from models.loading import load_model
        from plugins.common.directions_format import load_directions

        cls.tmp = tempfile.TemporaryDirectory()
        cls.ws = workspace(Path(cls.tmp.name) / "ws")
        cls.model, cls.tokenizer = load_model(cls.ws.path(f"transformers/{ICL}"))
        cls.manager = TaskManager(include_path=str(cls.ws.path("tasks")), include_defaults=False)
        cls.directions = load_directions(cls.ws.path(DIRECTIONS.format(model=ICL)))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def evaluate(self, steering=None):
        from plugins.steering_per_layer.lm_eval_run import run_lm_eval

        _, p = params()
        return run_lm_eval(self.model, self.tokenizer, ["icl_letters"], self.manager, p, steering)["results"]

    def intervention(self, **overrides) -> Intervention:
        _, p = params(with_intervention=True, **overrides)
        return Intervention.from_params(p)

    def test_scale_zero_equals_baseline_and_destruction_drops_accuracy(self):
        hooks = hook_count(self.model)
        base = self.evaluate()
        zero = self.evaluate(self.intervention(scale=0.0, layer_indices=[1]).steer(self.model, self.directions,
                                                                                     pad_token_id=0))
        self.assertEqual(zero, base)
        self.assertGreaterEqual(base["icl_letters"]["acc,none"], 0.8)
        broken = self.evaluate(self.intervention(scale=200.0, layer_indices=[0, 1]).steer(
            self.model, self.directions, pad_token_id=0))
        self.assertLess(broken["icl_letters"]["acc,none"], base["icl_letters"]["acc,none"] - 0.3)
        self.assertEqual(hook_count(self.model), hooks)  # no hook remains after the runs

    def test_last_token_steering_hits_each_rows_real_last_token_in_hflm_batches(self):
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        from models.layers import get_layers

        block = get_layers(self.model)[1].block
        seen: list[torch.Tensor] = []
        handle = block.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
        ids_seen: list[torch.Tensor] = []
        ids_handle = self.model.register_forward_pre_hook(lambda m, a: ids_seen.append(a[0].clone()))
        lm = HFLM(pretrained=self.model, tokenizer=self.tokenizer, batch_size=4)
        rng = random.Random(1)
        letters = "abcdefghij"
        requests = [Instance("loglikelihood", {}, (" ".join(f"example:{rng.choice(letters)}->{rng.choice(letters)}"
                                                            for _ in range(n)), " z"), i)
                    for i, n in enumerate([1, 4, 2, 6, 3, 5, 1, 2])]
        try:
            lm.loglikelihood(requests)
            plain = [out.clone() for out in seen]
            seen.clear()
            ids_seen.clear()
            iv = self.intervention(scale=3.0, layer_indices=[1], token_modification_mode="LAST_TOKEN")
            with iv.steer(self.model, self.directions, pad_token_id=0):
                lm.loglikelihood(requests)
        finally:
            handle.remove()
            ids_handle.remove()
        unit = self.directions["unit_direction"][1].to(torch.float32)
        padded_rows = 0
        self.assertEqual(len(seen), len(plain))
        for steered, before, ids in zip(seen, plain, ids_seen):
            for row in range(ids.shape[0]):
                real = (ids[row] != 0).nonzero().flatten()
                last = int(real.max())
                padded_rows += int(last < ids.shape[1] - 1)
                diff = steered[row] - before[row]
                changed = diff.abs().amax(-1) > 1e-5
                self.assertEqual(changed.nonzero().flatten().tolist(), [last])
                torch.testing.assert_close(diff[last], 3.0 * unit, atol=1e-4, rtol=0)
        self.assertGreater(padded_rows, 0)  # rows of different lengths were padded in one batch


class TestSubJob(unittest.TestCase):
    def test_results_files_baseline_comparison_and_resume_after_a_kill(self):
        from models.layers import get_layers
        from plugins.steering_per_layer import lm_eval_run

        with tempfile.TemporaryDirectory() as tmp:
            ws = workspace(Path(tmp) / "ws")
            base_ctx = sub_context(ws)
            lm_eval_run.evaluate_lm_eval(base_ctx)
            base = json.loads(base_ctx.writes[0].read_text())
            self.assertIn("icl_letters", base["results"])
            self.assertEqual(base["n-samples"]["icl_letters"]["effective"], 24)

            ctx = sub_context(ws, with_intervention=True, layer_indices=[1], scale=200.0)
            original = lm_eval_run.run_lm_eval
            forwards = []

            def killed(model, *args, **kwargs):  # the process dies after two forwards
                def count(*_):
                    forwards.append(1)
                    if len(forwards) > 2:
                        raise KeyboardInterrupt
                handle = get_layers(model)[0].block.register_forward_hook(count)
                try:
                    return original(model, *args, **kwargs)
                finally:
                    handle.remove()

            with mock.patch.object(lm_eval_run, "run_lm_eval", killed), self.assertRaises(KeyboardInterrupt):
                lm_eval_run.evaluate_lm_eval(ctx)
            forwards.clear()

            def counted(model, *args, **kwargs):
                handle = get_layers(model)[0].block.register_forward_hook(lambda *_: forwards.append(1))
                try:
                    return original(model, *args, **kwargs)
                finally:
                    handle.remove()

            with mock.patch.object(lm_eval_run, "run_lm_eval", counted):
                lm_eval_run.evaluate_lm_eval(ctx)
            requests = 24 * 4
            self.assertLess(len(forwards), -(-requests // 8))  # the two batches answered before the kill are cached
            steered = json.loads(ctx.writes[0].read_text())
            self.assertEqual(steered["latentrun"]["baseline"], str(base_ctx.writes[0]))
            rows = list(csv.DictReader(io.StringIO(ctx.writes[1].read_text())))
            acc = next(r for r in rows if r["metric"] == "acc")
            self.assertAlmostEqual(float(acc["baseline"]), base["results"]["icl_letters"]["acc,none"])
            self.assertLess(float(acc["difference"]), 0)
            self.assertIn("icl_letters", ctx.writes[2].read_text())


@slow
class TestGenerationTask(unittest.TestCase):
    def test_mmlu_pro_generates_under_steering_with_a_capped_answer_length(self):
        from plugins.steering_per_layer import lm_eval_run

        with tempfile.TemporaryDirectory() as tmp:
            ws = workspace(Path(tmp) / "ws")
            ctx = sub_context(ws, tasks=["mmlu_pro"], task_paths=[], limit=1.0, num_fewshot=0, max_gen_toks=4,
                              with_intervention=True, token_modification_mode="LAST_TOKEN", layer_indices=[1])
            lm_eval_run.evaluate_lm_eval(ctx)
            results = json.loads(ctx.writes[0].read_text())
            self.assertIn("exact_match,custom-extract", results["results"]["mmlu_pro"])
            config = results["configs"]["mmlu_pro_math"]
            self.assertEqual(config["output_type"], "generate_until")
            self.assertEqual(config["generation_kwargs"]["max_gen_toks"], 4)


class TestExampleWorkspace(unittest.TestCase):
    def test_the_readme_command_runs_on_a_copy_of_the_example(self):
        import subprocess
        import sys

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "ws"
            for part in ("latentrun.toml", "transformers/tiny-huginn-0125", "datasets/TIGER-Lab",
                         "experiments/candidate_directions/huginn-0125"):
                source, target = EXAMPLE / part, root / part
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
            done = subprocess.run(
                [sys.executable, str(REPO_ROOT / "runner/main.py"), "--jobs", "mmlu_pro_evaluate_lm_eval_with_intervention",
                 "--workspace_path", str(root), "--set", f"tasks={LOGLIK}", "--set", "layer_indices=5",
                 "--set", "limit=3", "--set", "batch_size=16", "--inline"],
                capture_output=True, text=True, cwd=REPO_ROOT)
            self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
            found = list((root / "experiments/lm_eval/huginn-0125" / LOGLIK).glob("*/results.json"))
            self.assertEqual(len(found), 1)
            results = json.loads(found[0].read_text())
            self.assertEqual(results["n-samples"][f"{LOGLIK}_math"]["effective"], 3)
            self.assertIn("layers=[5]", results["latentrun"]["intervention"])


if __name__ == "__main__":
    unittest.main()
