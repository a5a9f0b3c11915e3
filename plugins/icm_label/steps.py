"""Sub-job functions of ``icm_label``: search, zero_shot, report, evaluate.

Data files are read and checked before a model is loaded, so a malformed
file fails fast; every output is written through ``runner.atomic`` only
once it is complete, so a failed sub-job leaves no partial output.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Sequence

from runner.atomic import write_csv, write_json, write_text
from plugins.icm_label import report as tables
from plugins.icm_label.backends import Backend, label_of, make_backend
from plugins.icm_label.consistency import constraints, inconsistent
from plugins.icm_label.search import SearchConfig, initial_state, run_batch, split_batches
from plugins.icm_label.testbeds import Claim, Testbed, consistency_key, get_testbed, load_claims

_BACKENDS: dict[str, Backend] = {}  # one loaded model per process, shared by the sub-jobs of a process group


def _backend(ctx: Any, testbed: Testbed) -> Backend:
    from plugins.icm_label.layout import data_uses

    p = ctx.params
    key = json.dumps({k: p.get(k) for k in data_uses(p) + ["prefix_reuse", "prefix_cache_tokens", "api_base"]},
                     sort_keys=True, default=str)
    if key not in _BACKENDS:
        for old in _BACKENDS.values():
            old.close()
        _BACKENDS.clear()
        if p["backend"] == "local" and p.get("threads"):
            import torch

            torch.set_num_threads(p["threads"])
        _BACKENDS[key] = make_backend(dict(p, device_map=ctx.device_map), testbed, ctx.workspace, ctx.logger)
    return _BACKENDS[key]


def _testbed_and_claims(ctx: Any, path: Path | None = None) -> tuple[Testbed, list[Claim]]:
    bed = get_testbed(ctx.params["testbed"], ctx.params["consistency_key"])
    return bed, load_claims(path or ctx.path(ctx.params["train_file"]), bed)


def _jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, default=str) + "\n" for r in rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- search


def search(ctx: Any) -> None:
    """Label every batch with ICM; checkpointed per batch and every ``checkpoint_every`` iterations."""
    p = ctx.params
    bed, claims = _testbed_and_claims(ctx)
    batches = split_batches(claims, p["batch_size"], p["seed"])
    if p["max_batches"]:
        batches = batches[: p["max_batches"]]
    config = SearchConfig.from_params(p)
    backend = _backend(ctx, bed)
    start = time.perf_counter()
    states = []
    for b, batch in enumerate(batches):
        name = f"batch{b}"
        state = ctx.checkpoint.load(name) or initial_state(batch, config, b)
        if state["iteration"]:
            ctx.logger.info("batch %d: resuming at iteration %d of %d", b, state["iteration"], config.K)
        if not state["done"]:
            state = run_batch(backend, bed, batch, config, state,
                              save=lambda s, name=name: ctx.checkpoint.save(name, s),
                              checkpoint_every=p["checkpoint_every"],
                              progress=lambda steps, b=b: ctx.progress(
                                  steps, total=len(steps), description=f"ICM batch {b + 1}/{len(batches)}"))
        states.append(state)
    seconds = time.perf_counter() - start
    _write_search(ctx, bed, claims, batches, states, backend, seconds)


def _write_search(ctx: Any, bed: Testbed, claims: list[Claim], batches: list[list[Claim]],
                  states: list[dict[str, Any]], backend: Backend, seconds: float) -> None:
    labels: dict[int, tuple[int | None, int]] = {}
    for b, (batch, state) in enumerate(zip(batches, states)):
        for claim, label in zip(batch, state["labels"]):
            labels[claim.index] = (label, b)
    rows = []
    for claim in claims:
        label, batch = labels.get(claim.index, (None, None))
        rows.append({**claim.record, "icm_index": claim.index, "icm_label": label, "icm_batch": batch,
                     "icm_consistency_key": consistency_key(bed, claim)})
    trajectory = [r for s in states for r in s["trajectory"]]
    summary = {
        "testbed": bed.name, "n_claims": len(claims), "n_batches": len(batches),
        "labelled": sum(1 for r in rows if r["icm_label"] is not None), "seconds": round(seconds, 2),
        "backend": backend.name, "backend_stats": dict(backend.stats),
        "batches": [{"batch": s["batch"], "claims": len(batch), **s["final"],
                     "energy_evaluations": s.get("energy_evaluations")} for batch, s in zip(batches, states)],
    }
    files = ctx.writes
    write_text(files[0], _jsonl(rows))
    write_csv(files[1], trajectory, tables.TRAJECTORY_COLUMNS)
    write_json(files[2], {"params": {k: v for k, v in ctx.params.items() if k != "device_map"},
                          "trajectory": trajectory})
    write_json(files[3], summary)
    ctx.logger.info("ICM labelled %d of %d claims in %.1fs (%s)", summary["labelled"], len(claims), seconds,
                    ", ".join(f"{k}={v}" for k, v in backend.stats.items()))
    print(f"wrote {files[0]}", flush=True)


# --------------------------------------------------------------------------- zero-shot


def zero_shot(ctx: Any) -> None:
    """Every claim labelled by the model alone: the sign of its log-odds with no demonstrations."""
    bed, claims = _testbed_and_claims(ctx)
    backend = _backend(ctx, bed)
    scores = backend.few_shot([], [], claims)
    rows = [{"index": c.index, "consistency_id": c.consistency_id, "log_odds": s, "label": label_of(s),
             "gold": c.label} for c, s in zip(claims, scores)]
    write_text(ctx.writes[0], _jsonl(rows))


# --------------------------------------------------------------------------- report


def labelling_rows(bed: Testbed, claims: list[Claim], labellings: dict[str, list[int | None]], seed: int) -> list[dict]:
    """Accuracy against gold (on the claims ICM labelled) and inconsistent pairs, per labelling.

    Balanced accuracy (the mean of the accuracies on true and on false claims) is there too, because gold
    labels are rarely half true: GSM8K-style verification has more wrong solutions than right ones, and a
    labelling that says "false" to everything scores the share of false claims in plain accuracy.
    """
    from sklearn.metrics import balanced_accuracy_score

    from plugins.common.stats import accuracy

    rules = constraints(bed, claims)
    icm = labellings["ICM"]
    scope = [i for i, y in enumerate(icm) if y is not None]
    gold = [claims[i].label for i in scope]
    has_gold = None not in gold
    rows = []
    for name, labels in labellings.items():
        masked = [labels[i] if icm[i] is not None else None for i in range(len(claims))]
        row = {"labelling": name, "labelled": len(scope), "inconsistent": len(inconsistent(rules, masked))}
        if has_gold and scope:
            row["accuracy"] = accuracy([labels[i] == g for i, g in zip(scope, gold)], seed=seed)
            if len(set(gold)) == 2:
                row["balanced_accuracy"] = round(float(balanced_accuracy_score(gold, [labels[i] for i in scope])), 4)
        rows.append(row)
    return rows


def report(ctx: Any) -> None:
    """Summary table (ICM vs zero-shot vs random labels vs gold), trajectory plot."""
    p = ctx.params
    bed, claims = _testbed_and_claims(ctx)
    labelled = read_jsonl(ctx.reads[1])
    trajectory = json.loads(Path(ctx.reads[2]).read_text())["trajectory"]
    zero = read_jsonl(ctx.reads[3])
    rng = random.Random(f"{p['seed']}:random-labels")
    icm = {r["icm_index"]: r["icm_label"] for r in labelled}
    labellings: dict[str, list[int | None]] = {
        "ICM": [icm.get(c.index) for c in claims],
        "zero-shot": [r["label"] for r in zero],
        "random": [rng.randint(0, 1) for _ in claims],
    }
    if all(c.label is not None for c in claims):
        labellings["gold"] = [c.label for c in claims]
    rows = labelling_rows(bed, claims, labellings, p["seed"])
    summary = {"testbed": bed.name, "model": p["model"], "backend": p["backend"], "n_claims": len(claims),
               "rows": rows, "note": "accuracy against gold labels on the claims ICM labelled; gold labels are "
                                     "never used by the search"}
    write_json(ctx.writes[0], summary)
    write_csv(ctx.writes[1], [tables.flat(r) for r in rows], tables.LABEL_COLUMNS)
    tables.plot_trajectory(trajectory, Path(ctx.writes[2]), title=f"ICM on {bed.name} ({p['model']})")
    tables.print_table(f"ICM labels: {bed.name}, {p['model']} ({p['backend']})", rows)


# --------------------------------------------------------------------------- downstream evaluation


def evaluate(ctx: Any) -> None:
    """Many-shot in-context accuracy on held-out claims with ICM, gold, random or no demonstrations."""
    from plugins.common.stats import accuracy

    p = ctx.params
    bed, claims = _testbed_and_claims(ctx)
    held_out = load_claims(ctx.path(p["eval_file"]), bed)
    missing = [c.index for c in held_out if c.label is None]
    if missing:
        raise ValueError(f"{p['eval_file']}: the evaluation needs a gold label on every claim; "
                         f"{len(missing)} have none (first: claim {missing[0]})")
    icm = {r["icm_index"]: r["icm_label"] for r in read_jsonl(ctx.reads[-1])}
    pool = [c for c in claims if icm.get(c.index) is not None]
    if not pool:
        raise ValueError("the ICM labels file has no labelled claim to use as a demonstration")
    rng = random.Random(f"{p['seed']}:shots")
    if p["num_shots"] and p["num_shots"] < len(pool):
        keep = set(c.index for c in rng.sample(pool, p["num_shots"]))
        pool = [c for c in pool if c.index in keep]
    conditions: dict[str, list[int] | None] = {"zero-shot": None,
                                               "random labels": [rng.randint(0, 1) for _ in pool],
                                               "ICM labels": [icm[c.index] for c in pool]}
    if all(c.label is not None for c in pool):
        conditions["gold labels"] = [c.label for c in pool]  # type: ignore[misc]
    backend = _backend(ctx, bed)
    rows = []
    for name, demo_labels in conditions.items():
        demos = pool if demo_labels is not None else []
        scores = backend.few_shot(demos, demo_labels or [], held_out)
        correct = [label_of(s) == c.label for s, c in zip(scores, held_out)]
        rows.append({"condition": name, "shots": len(demos), "accuracy": accuracy(correct, seed=p["seed"]),
                     "demo_label_accuracy": (sum(y == c.label for y, c in zip(demo_labels, pool)) / len(pool)
                                             if demo_labels is not None and pool[0].label is not None else None)})
    published = tables.PUBLISHED.get(bed.name)
    result = {"testbed": bed.name, "model": p["model"], "backend": p["backend"], "eval_file": p["eval_file"],
              "n_eval": len(held_out), "rows": rows, "published_llama_3_1_70b": published}
    write_json(ctx.writes[0], result)
    write_csv(ctx.writes[1], [tables.flat(r) for r in rows], tables.DOWNSTREAM_COLUMNS)
    tables.plot_downstream(rows, Path(ctx.writes[2]), title=f"{bed.name}: many-shot accuracy ({p['model']})")
    tables.print_table(f"Many-shot accuracy on {len(held_out)} held-out claims: {bed.name}, {p['model']}", rows)
