"""Sub-job functions of the run_experiment jobs (torch and models are imported when they run)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Sequence

from plugins.run_experiment.config import Settings, check, config_files
from plugins.run_experiment.measures import MEASURES, fmt, summarize
from plugins.run_experiment.stimuli import import_digit_mat_npz, load_stimuli
from runner.atomic import write_csv, write_json, write_text

CHUNK = 32  # items per checkpoint
_LOADED: dict[tuple, tuple[Any, Any]] = {}


def settings_of(params: dict[str, Any]) -> Settings:
    """The Settings the plan resolved (config merged) from the sub-job's params."""
    return check(params)


# --------------------------------------------------------------------------- loading


def checkpoint_dir(ctx, s: Settings) -> Path | None:
    """``W/transformers/<model>/revisions/<revision>`` when it exists; None means the model dir or the Hub cache."""
    if not s.revision:
        return None
    local = ctx.path(f"transformers/{s.model}") / "revisions" / s.revision
    return local if local.is_dir() else None


def load(ctx, s: Settings):
    """Model and tokenizer of the setting's checkpoint, placed by the device map (``accelerate``: auto)."""
    from models.loading import limit_threads_for_tiny_model, load_model, resolve_model_dir

    device_map = ctx.device_map
    if s.accelerate and getattr(device_map, "placement", "cpu") == "cpu":
        device_map = "auto"
    folder = checkpoint_dir(ctx, s)
    if folder is None:
        folder = resolve_model_dir(s.model, ctx.workspace, s.revision or None)
    key = (str(folder), repr(device_map), s.dtype)
    if key not in _LOADED:  # sub-jobs of one grid that share a process share the model
        _LOADED.clear()
        _LOADED[key] = load_model(folder, workspace=None, device_map=device_map, dtype=s.dtype)
    model, tok = _LOADED[key]
    n_params = sum(p.numel() for p in model.parameters())
    limit_threads_for_tiny_model(model)
    return model, tok, folder, n_params


def training_tokens(folder: Path, revision: str) -> float | None:
    """Tokens the checkpoint was trained on: its training_log.json, else the revision name (``tokens44B``)."""
    log = folder / "training_log.json"
    if log.is_file():
        data = json.loads(log.read_text())
        if "tokens_seen" in data:
            return float(data["tokens_seen"])
    match = re.search(r"tokens(\d+(?:\.\d+)?)([KMBT]?)", revision or folder.name)
    if match:
        return float(match.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[match.group(2)]
    return None


# --------------------------------------------------------------------------- evaluate


def evaluate(ctx) -> None:
    """Sub-job: one model × task × condition × revision → per-item CSV + summary JSON + table."""
    from plugins.run_experiment.tasks import EVALUATORS

    s = settings_of(ctx.params)
    items = load_stimuli(s.task, ctx.path(s.stimuli), s.condition, s.max_per_type)  # before the model loads
    if s.limit:
        items = items[: s.limit]
    ctx.logger.info("%s%s: %d items from %s", s.task, f"/{s.condition}" if s.condition else "", len(items), s.stimuli)
    model, tok, folder, n_params = load(ctx, s)
    state = ctx.checkpoint.load("rows", {"done": 0, "rows": []})
    rows: list[dict[str, Any]] = state["rows"]
    if state["done"]:
        ctx.logger.info("resuming after %d of %d items", state["done"], len(items))
    chunks = range(state["done"], len(items), CHUNK)
    for start in ctx.progress(chunks, description=f"{s.task} {s.model_slug}"):
        rows += EVALUATORS[s.task](model, tok, items[start:start + CHUNK], s)
        ctx.checkpoint.save("rows", {"done": min(start + CHUNK, len(items)), "rows": rows})
    for row in rows:
        row.update({"model": s.model, "revision": s.revision or "main"})
    seed = int(ctx.params.get("seed", 0))
    summary = {
        "model": s.model, "revision": s.revision or "main", "task": s.task, "condition": s.condition,
        "stimuli": s.stimuli, "n_items": len(rows), "n_params": n_params,
        "training_tokens": training_tokens(folder, s.revision), "seed": seed,
        "measures": summarize(s.task, rows, seed),
    }
    write_csv(ctx.writes[0], rows, columns=list(dict.fromkeys(k for row in rows for k in row)))
    write_json(ctx.writes[1], summary)
    print_table([summary], title=f"{s.task}{' ' + s.condition if s.condition else ''}: {s.model} "
                                 f"({s.revision or 'main'}), n={len(rows)}, 95% bootstrap intervals")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def print_table(summaries: Sequence[dict[str, Any]], title: str) -> None:
    """A rich table per task: one row per result set, one column per measure of the task."""
    from plugins.common.tables import rows_table

    by_task: dict[str, list[dict[str, Any]]] = {}
    for summary in summaries:
        by_task.setdefault(summary["task"], []).append(summary)
    for task, group in by_task.items():
        rows = [{"model": s["model"], "revision": s["revision"], "condition": s.get("condition") or "",
                 "n": s["n_items"], **{m.name: fmt(s["measures"].get(m.name, {})) for m in MEASURES[task]}}
                for s in group]
        print(rows_table(rows, title if len(by_task) == 1 else f"{title} — {task}"), end="")


# --------------------------------------------------------------------------- grid report


def report(ctx) -> None:
    """Sub-job: every result set of a grid → summary CSV/markdown, rich table, plots by size and by tokens."""
    from plugins.run_experiment.plots import plot_by_size, plot_by_tokens

    seed = int(ctx.params.get("seed", 0))
    summaries = []
    pooled: dict[tuple, list[dict[str, str]]] = {}
    meta: dict[tuple, dict[str, Any]] = {}
    for csv_path, json_path in zip(ctx.reads[0::2], ctx.reads[1::2]):
        summary = json.loads(Path(json_path).read_text())
        rows = read_rows(Path(csv_path))
        summaries.append(summary)
        key = (summary["task"], summary["model"], summary["revision"])
        pooled.setdefault(key, []).extend(rows)
        meta[key] = summary
    points = []  # one per task × model × revision, conditions pooled (the paper's CRT mean)
    for (task, model, revision), rows in pooled.items():
        points.append({"task": task, "model": model, "revision": revision, "n_items": len(rows),
                       "n_params": meta[(task, model, revision)]["n_params"],
                       "training_tokens": meta[(task, model, revision)]["training_tokens"],
                       "measures": summarize(task, rows, seed)})
    table = [{"task": s["task"], "condition": s.get("condition") or "", "model": s["model"],
              "revision": s["revision"], "n_params": s["n_params"], "training_tokens": s["training_tokens"],
              "measure": name, "kind": stat["kind"], "mean": stat["mean"], "lo": stat["lo"], "hi": stat["hi"],
              "n": stat["n"]}
             for s in summaries + [dict(p, condition="all") for p in points if p["task"] == "crt"]
             for name, stat in s["measures"].items()]
    files = dict(zip(ctx.params["_report_keys"], ctx.writes))
    write_csv(files["csv"], table)
    write_text(files["markdown"], markdown_table(summaries, points))
    print_table(summaries, title="task demands: low- vs high-demand methods, 95% bootstrap intervals")
    for task in dict.fromkeys(p["task"] for p in points):
        task_points = [p for p in points if p["task"] == task]
        plot_by_size(task, task_points, files[f"{task}_size"])
        plot_by_tokens(task, task_points, files[f"{task}_tokens"])


def markdown_table(summaries: Sequence[dict[str, Any]], points: Sequence[dict[str, Any]]) -> str:
    """The methods of each task side by side, per model and revision (CRT also pooled over conditions)."""
    out = []
    rows = list(summaries) + [dict(p, condition="all") for p in points if p["task"] == "crt"]
    for task in dict.fromkeys(s["task"] for s in rows):
        names = [m.name for m in MEASURES[task]]
        out.append(f"### {task}\n")
        out.append("| model | revision | condition | params | tokens | n | " + " | ".join(names) + " |")
        out.append("|---" * (6 + len(names)) + "|")
        for s in (r for r in rows if r["task"] == task):
            tokens = s["training_tokens"]
            out.append(f"| {s['model']} | {s['revision']} | {s.get('condition') or ''} | {s['n_params']:,} | "
                       f"{'' if tokens is None else f'{tokens:,.0f}'} | {s['n_items']} | "
                       + " | ".join(fmt(s["measures"].get(n, {})) for n in names) + " |")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- configs and import


def make_configs(ctx) -> None:
    """Sub-job: one YAML per task × model (× CRT condition), as the seed's configs/make_configs.py."""
    files = config_files(ctx.params["models"], ctx.params["tasks"], ctx.params.get("accelerate_models", []))
    out = ctx.path(ctx.params["out_dir"])
    for rel, text in files.items():
        write_text(out / rel, text)
    write_json(ctx.writes[0], {"out_dir": str(out), "files": sorted(files)})
    ctx.logger.info("wrote %d configs under %s", len(files), out)
    print(f"wrote {len(files)} configs under {out}; run one with --jobs run_experiment --set config={out}/{next(iter(files))}")


def import_digit_mat(ctx) -> None:
    """Sub-job: the published all_problems.npz (pickled; the user names it) → all_problems.json, once."""
    npz = ctx.params.get("npz_path")
    if not npz:
        raise ValueError("name the published archive: --set npz_path=/path/to/all_problems.npz")
    npz_path = Path(npz).expanduser().resolve()
    if not npz_path.is_file():
        raise FileNotFoundError(f"{npz_path} does not exist")
    target = ctx.writes[0]
    counts = import_digit_mat_npz(npz_path, target)
    ctx.logger.info("imported %d problems of %d types to %s", sum(counts.values()), len(counts), target)
    print(f"{sum(counts.values())} problems, {len(counts)} types -> {target}")
