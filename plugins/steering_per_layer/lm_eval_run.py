"""Sub-job ``evaluate_lm_eval``: lm-evaluation-harness on a model loaded by ``models/``, optionally steered.

The model is loaded once (``plugins.common.extraction.load``: device map,
dtype, Huginn's ``num_steps``), wrapped as ``HFLM(pretrained=model,
tokenizer=tokenizer, batch_size=...)`` — a pre-loaded model ignores
``simple_evaluate``'s ``model_args`` and ``batch_size``, so both go to HFLM —
and evaluated by ``lm_eval.simple_evaluate`` inside the intervention's
steering context, which removes every hook when it ends.

lm-eval right-pads log-likelihood batches with token id 0 and calls the model
without an attention mask, so the steering context is given
``pad_token_id=0``: ``LAST_TOKEN`` then finds each row's last real token
(the last non-zero id), never a pad. (A row whose real last token *is* id 0
would be misread; with ``ALL_TOKENS`` pads are steered too, which changes no
real token's logits under the causal mask.) Generation requests carry a mask,
which the steering hooks use instead.

Requests are cached in the sub-job's checkpoint folder (lm-eval's
``CachingLM``, one SQLite row per answered request), so a killed run resumes
where it stopped; the cache is keyed by this run's params, intervention
included, and cleared when the sub-job completes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from plugins.steering_per_layer.interventions import Intervention, preflight, read_directions

LM_EVAL_PAD_ID = 0  # lm-eval's pad_and_concat pads with zeros
NOT_METRICS = ("sample_len", "sample_count")  # bookkeeping entries of group results


class TaskNotFoundError(ValueError):
    """A requested lm-eval task is neither local, in ``task_paths``, nor built in."""


def task_manager(tasks: list[str], include: list[str]) -> Any:
    """lm-eval's TaskManager over our folders; built-in tasks are indexed only when a task needs one."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include, include_defaults=False)
    if all(t in manager.all_tasks for t in tasks):
        return manager
    manager = TaskManager(include_path=include, include_defaults=True)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise TaskNotFoundError(f"unknown lm-eval task(s) {unknown}: not a local task (mmlu, mmlu_pro, "
                                "mmlu_pro_loglik, piqa and their sub-tasks), not in task_paths, not built into "
                                f"lm-eval {_lm_eval_version()}")
    return manager


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def resolve_limit(limit: float | None) -> int | float | None:
    """lm-eval's ``limit``: a count when >= 1, a fraction of each task when below."""
    if limit is None:
        return None
    return int(limit) if float(limit) >= 1 else float(limit)


def _n_of(name: str, results: Mapping[str, Any]) -> int | None:
    samples = results.get("n-samples", {})
    if name in samples:
        return int(samples[name].get("effective", samples[name].get("original", 0)))
    subtasks = results.get("group_subtasks", {}).get(name)
    if subtasks:
        counts = [_n_of(t, results) for t in subtasks]
        return sum(c for c in counts if c is not None)
    return None


def metric_rows(results: Mapping[str, Any], baseline: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per (task, metric, filter): value, lm-eval's stderr, n, a normal 95% interval (and the baseline)."""
    rows = []
    for name, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            if key == "alias" or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            if metric in NOT_METRICS:
                continue
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) else None
            row: dict[str, Any] = {"task": name, "metric": metric, "filter": filt, "n": _n_of(name, results),
                                   "value": float(value), "stderr": stderr,
                                   "ci95_low": float(value) - 1.96 * stderr if stderr is not None else None,
                                   "ci95_high": float(value) + 1.96 * stderr if stderr is not None else None}
            if baseline is not None:
                base = baseline.get("results", {}).get(name, {}).get(key)
                row["baseline"] = float(base) if isinstance(base, (int, float)) else None
                row["difference"] = float(value) - row["baseline"] if row["baseline"] is not None else None
            rows.append(row)
    return rows


def _jsonable(results: Mapping[str, Any]) -> dict[str, Any]:
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(results, default=handle_non_serializable, ensure_ascii=False))


def run_lm_eval(model: Any, tokenizer: Any, tasks: list[str], manager: Any, p: Mapping[str, Any],
                steering: Any = None, cache: str | None = None) -> dict[str, Any]:
    """``simple_evaluate`` on ``HFLM(pretrained=model)``, inside ``steering`` when given."""
    import contextlib

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=int(p["batch_size"]))
    seed = int(p.get("seed", 0))
    gen_kwargs = {"max_gen_toks": int(p["max_gen_toks"])} if p.get("max_gen_toks") else None
    with steering if steering is not None else contextlib.nullcontext():
        results = simple_evaluate(
            model=lm, tasks=list(tasks), task_manager=manager, num_fewshot=p.get("num_fewshot"),
            limit=resolve_limit(p.get("limit")), bootstrap_iters=int(p["bootstrap_iters"]),
            log_samples=bool(p.get("log_samples")), use_cache=cache, random_seed=seed, numpy_random_seed=seed,
            torch_random_seed=seed, fewshot_random_seed=seed, gen_kwargs=gen_kwargs)
    if results is None:
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    return results


def _local_include(ctx: Any, tasks: list[str], folder: Path) -> list[str]:
    from plugins.steering_per_layer.lm_eval_tasks import write_local_tasks

    p = ctx.params
    written = write_local_tasks(ctx.workspace.root, folder, tasks, p.get("dataset_paths") or {})
    for name, subtasks in written.items():
        ctx.logger.info("local %s tasks from %s: %d sub-tasks", name, folder / name, len(subtasks))
    extra = [str(ctx.path(t)) if not Path(t).is_absolute() else t for t in p.get("task_paths") or []]
    return [str(folder)] + extra


def evaluate_lm_eval(ctx: Any) -> None:
    import tempfile

    from plugins.common.extraction import load
    from plugins.common.tables import rows_table
    from runner.atomic import write_csv, write_json, write_text

    p = ctx.params
    tasks = list(p["tasks"])
    intervention = Intervention.from_params(p) if p["with_intervention"] else None
    directions_path = ctx.reads[-1] if intervention is not None else None
    if intervention is not None:
        preflight(intervention, p["model"], ctx.path(f"transformers/{p['model']}"), directions_path,
                  p.get("num_steps"))
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # data come from the workspace, never the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="latentrun-lm-eval-tasks-") as tmp:
        manager = task_manager(tasks, _local_include(ctx, tasks, Path(tmp)))
        model, tokenizer = load(ctx.workspace, p, ctx.device_map)
        steering = None
        if intervention is not None:
            directions = read_directions(directions_path, intervention.direction_layers)
            steering = intervention.steer(model, directions, pad_token_id=LM_EVAL_PAD_ID)
            ctx.logger.info("intervention: %s", intervention.describe())
        cache = str(ctx.checkpoint.path("requests"))
        results = run_lm_eval(model, tokenizer, tasks, manager, p, steering, cache)
    samples = results.pop("samples", None)
    results = _jsonable(results)
    baseline = _baseline(ctx) if intervention is not None else None
    results["latentrun"] = {"job": ctx.job, "run_id": ctx.run_id, "params": dict(p),
                            "intervention": intervention.describe() if intervention else None,
                            "baseline": str(baseline[0]) if baseline else None}
    write_json(ctx.writes[0], results)
    rows = metric_rows(results, baseline[1] if baseline else None)
    write_csv(ctx.writes[1], rows, None if rows else ["task"])
    title = f"lm-eval {p['model']}: {', '.join(tasks)}" + (f" — {intervention.describe()}" if intervention else "")
    table = rows_table(rows, title, number=".4f") if rows else "(no metrics)\n"
    write_text(ctx.writes[2], table)
    if samples is not None:
        lines = [json.dumps({"task": task, **_jsonable(s)}, ensure_ascii=False)
                 for task, rows_ in samples.items() for s in rows_]
        write_text(ctx.writes[0].with_name("samples.jsonl"), "\n".join(lines) + "\n")
    ctx.logger.info("\n%s", table)


def _baseline(ctx: Any) -> tuple[Path, dict[str, Any]] | None:
    """The unsteered run's results with the same evaluation params, when it exists."""
    from plugins.steering_per_layer.lm_eval_jobs import results_dir

    p = dict(ctx.params)
    path = ctx.path(results_dir({**p, "with_intervention": False})) / "results.json"
    if not path.exists():
        return None
    return path, json.loads(path.read_text())
