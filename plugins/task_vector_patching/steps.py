"""Sub-job functions of the task_vector_patching jobs (heavy imports happen here, at run time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from plugins.task_vector_patching import layout
from plugins.common.stats import accuracy, fmt, mean_accuracy
from plugins.task_vector_patching.tasks import (
    Task, TaskError, build_prompt, check_size, filter_single_token, is_correct, load_task, sample_datasets,
)
from runner.atomic import atomic_path, write_csv, write_json

#: published mean over the paper's 18 tasks: baseline / task vector / ICL (Hendel et al. 2023, Table)
PUBLISHED = {
    "gpt-j-6b": (0.12, 0.68, 0.81), "llama-7b": (0.13, 0.78, 0.86), "llama-13b": (0.15, 0.79, 0.87),
    "llama-30b": (0.16, 0.78, 0.90), "pythia-2.8b": (0.13, 0.72, 0.83), "pythia-6.9b": (0.11, 0.71, 0.82),
    "pythia-12b": (0.11, 0.73, 0.82),
}

_LOADED: dict[tuple, tuple[Any, Any]] = {}


def published_for(model: str) -> tuple[float, float, float] | None:
    key = model.lower().rsplit("/", 1)[-1]
    for name, numbers in PUBLISHED.items():
        if key == name or key.replace("_", "-") == name:
            return numbers
    return None


def load(ctx, model_name: str | None = None):
    """Model and tokenizer, loaded once per process (sub-jobs sharing a process reuse them)."""
    import torch

    from models.loading import limit_threads_for_tiny_model, load_model

    name = model_name or ctx.params["model"]
    key = (str(ctx.workspace.root), name, repr(ctx.device_map), ctx.params.get("dtype", "float32"))
    if key not in _LOADED:
        _LOADED.clear()
        model, tokenizer = load_model(name, workspace=ctx.workspace, device_map=ctx.device_map,
                                      dtype=ctx.params.get("dtype", "float32"))
        model.eval()
        limit_threads_for_tiny_model(model)
        _LOADED[key] = (model, tokenizer)
    torch.set_grad_enabled(False)
    return _LOADED[key]


def _seed(params: dict, *parts: Any) -> str:
    return ":".join(str(p) for p in (params["seed"], *parts))


def prepared_task(name: str, tokenizer: Any, root: Path, params: dict) -> Task:
    task = filter_single_token(load_task(name, root), tokenizer, params["prompt_format"])
    check_size(task, params["num_demos"], params["num_dummy_queries"])
    return task


def _write_tensors(path: str | Path, tensors: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
    write_json(path.with_suffix(".json"), meta)


def _read_tensors(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


# --------------------------------------------------------------------------- main: extract


def extract(ctx) -> None:
    """Per task: sample datasets, baseline + ICL predictions, task vectors θ for dev and test.

    With ``num_processes`` = N, N processes (one GPU each when the machine
    has N) take every N-th task that is not done yet.
    """
    p = ctx.params
    done = set(ctx.checkpoint.load("done", []))
    todo = [name for name in p["tasks"] if not (name in done and _task_extracted(ctx, name))]
    world = int(p.get("num_processes", 1))
    if world > 1 and len(todo) > 1:
        from plugins.common.parallel import run_processes

        ctx.logger.info("data-parallel: %d processes extract %d task(s)", world, len(todo))
        run_processes(_extract_worker, [(ctx, todo[rank::world], rank, world) for rank in range(world)],
                      "task-vectors")
        done.update(name for name in todo if _task_extracted(ctx, name))
        ctx.checkpoint.save("done", sorted(done))
        return
    model, tok = load(ctx)
    for name in ctx.progress(todo, description="task vectors: extract"):
        _extract_task(ctx, model, tok, name)
        done.add(name)
        ctx.checkpoint.save("done", sorted(done))


def _task_extracted(ctx, name: str) -> bool:
    return all(ctx.path(v).exists() for v in layout.task_files(ctx.params, name).values())


def _extract_worker(ctx, names: list[str], rank: int, world: int) -> None:
    """Data-parallel process: the tasks ``names``, each written atomically as in one process."""
    import dataclasses

    import torch

    from runner.jobs import DeviceMap

    if torch.cuda.device_count() >= world:
        ctx = dataclasses.replace(ctx, device_map=DeviceMap(f"cuda:{rank}"))
    model, tok = load(ctx)
    for name in names:
        _extract_task(ctx, model, tok, name)


def _extract_task(ctx, model: Any, tok: Any, name: str) -> None:
    from plugins.task_vector_patching.method import (
        decode_tokens, encode, first_token_predictions, task_vectors,
    )

    p = ctx.params
    files = {k: ctx.path(v) for k, v in layout.task_files(p, name).items()}
    task = prepared_task(name, tok, ctx.workspace.root, p)
    splits = {split: sample_datasets(task, p[f"{split}_size"], p["num_demos"], p["num_dummy_queries"],
                                     seed=_seed(p, name, split)) for split in ("dev", "test")}
    write_json(files["datasets"], {
        "task": task.name, "family": task.family, "source": task.source, "allow_prefix": task.allow_prefix,
        "usable_pairs": len(task.pairs), "dropped_multi_token": task.dropped, **splits,
    })
    test = splits["test"]
    fmt_, sep = p["prompt_format"], p["separator"]
    queries = [build_prompt([], ds["query"][0], fmt_, sep) for ds in test]
    full = [build_prompt([tuple(d) for d in ds["demos"]], ds["query"][0], fmt_, sep) for ds in test]
    icl = {}
    for cond, prompts in (("baseline", queries), ("icl", full)):
        preds = decode_tokens(tok, first_token_predictions(model, tok, encode(tok, prompts), p["batch_size"]))
        correct = [is_correct(pr, ds["query"][1], task.allow_prefix) for pr, ds in zip(preds, test)]
        icl[cond] = {**accuracy(correct, seed=p["seed"]), "correct": correct, "predictions": preds}
    write_json(files["icl"], icl)
    vectors = {split: task_vectors(model, tok, splits[split], fmt_, sep, p["batch_size"]) for split in splits}
    _write_tensors(files["vectors"], vectors, {"model": p["model"], "task": task.name,
                                               "layers": list(range(vectors["dev"].shape[1])),
                                               "shape": "[datasets, layers, hidden]",
                                               "what": "block output at the last token, mean over dummy queries",
                                               "num_demos": p["num_demos"],
                                               "num_dummy_queries": p["num_dummy_queries"], "seed": p["seed"]})
    ctx.logger.info("%s: baseline %s, ICL %s", name, fmt(icl["baseline"]), fmt(icl["icl"]))


# --------------------------------------------------------------------------- main: sweep


def _centre(vectors: Sequence[Any]):
    """Mean θ over every dataset of every task: ``[layers, hidden]``."""
    import torch

    return torch.cat(list(vectors)).mean(0)


def additive_vectors(dev_vectors: dict) -> dict:
    """``add`` mode: each task's mean dev θ minus the mean over all tasks' dev θ, per layer."""
    if len(dev_vectors) < 2:
        raise ValueError("patch_mode=add centres the task vectors on the mean over tasks: give at least 2 tasks")
    centre = _centre(dev_vectors.values())
    return {name: v.mean(0) - centre for name, v in dev_vectors.items()}


def _patch_inputs(p: dict, vectors: dict, additive: dict | None, name: str, split: str, layers: list[int]):
    v = vectors[split] if additive is None else additive[name].unsqueeze(0).expand(len(vectors[split]), -1, -1)
    return v[:, layers]


def sweep(ctx) -> None:
    """Per task: task-vector accuracy at every layer on dev; test accuracy at the best dev layer."""
    from plugins.task_vector_patching.method import decode_tokens, encode, patched_predictions

    p = ctx.params
    model, tok = load(ctx)
    vectors = {n: _read_tensors(ctx.path(layout.task_files(p, n)["vectors"])) for n in p["tasks"]}
    additive = additive_vectors({n: v["dev"] for n, v in vectors.items()}) if p["patch_mode"] == "add" else None
    done = set(ctx.checkpoint.load("done", []))
    for name in ctx.progress(p["tasks"], description=f"task vectors: sweep ({layout.mode_key(p)})"):
        out = ctx.path(layout.sweep_file(p, name))
        if name in done and out.exists():
            continue
        data = json.loads(ctx.path(layout.task_files(p, name)["datasets"]).read_text())
        n_layers = vectors[name]["dev"].shape[1]
        layers = list(range(n_layers))
        result: dict[str, Any] = {"task": name, "patch_mode": p["patch_mode"], "scale": p["scale"],
                                  "n_layers": n_layers}
        curve = []
        dev = data["dev"]
        seqs = encode(tok, [build_prompt([], ds["query"][0], p["prompt_format"], p["separator"]) for ds in dev])
        preds = patched_predictions(model, seqs, _patch_inputs(p, vectors[name], additive, name, "dev", layers),
                                    layers, p["patch_mode"], p["scale"], p["batch_size"])
        for layer in layers:
            words = decode_tokens(tok, preds[layer])
            correct = [is_correct(w, ds["query"][1], data["allow_prefix"]) for w, ds in zip(words, dev)]
            # diagnostic: the answer to one of the dummy queries θ was taken from (θ carried x', not the task)
            dummy = [any(is_correct(w, d[1], data["allow_prefix"]) for d in ds["dummies"]) for w, ds in zip(words, dev)]
            curve.append({"layer": layer, **accuracy(correct, seed=p["seed"]),
                          "answers_dummy_query": sum(dummy) / len(dummy)})
        best = max(curve, key=lambda row: (row["acc"], -row["layer"]))["layer"]
        test = data["test"]
        seqs = encode(tok, [build_prompt([], ds["query"][0], p["prompt_format"], p["separator"]) for ds in test])
        preds = patched_predictions(model, seqs, _patch_inputs(p, vectors[name], additive, name, "test", [best]),
                                    [best], p["patch_mode"], p["scale"], p["batch_size"])
        words = decode_tokens(tok, preds[0])
        correct = [is_correct(w, ds["query"][1], data["allow_prefix"]) for w, ds in zip(words, test)]
        result.update(dev_by_layer=curve, best_layer=best,
                      test={**accuracy(correct, seed=p["seed"]), "correct": correct, "predictions": words})
        write_json(out, result)
        ctx.logger.info("%s: best layer %d/%d, test task vector %s", name, best, n_layers, fmt(result["test"]))
        done.add(name)
        ctx.checkpoint.save("done", sorted(done))


# --------------------------------------------------------------------------- main: report


def collect(p: dict, root: Path) -> dict:
    """Rows of the main table (per task and the mean) from the files of ``extract`` and ``sweep``."""
    rows, curves = [], {}
    per_cond: dict[str, list] = {"baseline": [], "task_vector": [], "icl": []}
    for name in p["tasks"]:
        icl = json.loads((root / layout.task_files(p, name)["icl"]).read_text())
        sw = json.loads((root / layout.sweep_file(p, name)).read_text())
        data = json.loads((root / layout.task_files(p, name)["datasets"]).read_text())
        row = {"task": name, "family": data["family"], "usable_pairs": data["usable_pairs"],
               "baseline": _stat(icl["baseline"]), "task_vector": _stat(sw["test"]), "icl": _stat(icl["icl"]),
               "best_layer": sw["best_layer"], "n_layers": sw["n_layers"],
               "best_depth": round(sw["best_layer"] / max(1, sw["n_layers"] - 1), 3),
               "best_dev": sw["dev_by_layer"][sw["best_layer"]]["acc"]}
        rows.append(row)
        curves[name] = sw["dev_by_layer"]
        per_cond["baseline"].append(icl["baseline"]["correct"])
        per_cond["icl"].append(icl["icl"]["correct"])
        per_cond["task_vector"].append(sw["test"]["correct"])
    mean = {"task": "mean", "family": "", **{c: mean_accuracy(v, seed=p["seed"]) for c, v in per_cond.items()}}
    published = published_for(p["model"])
    return {"model": p["model"], "patch_mode": p["patch_mode"], "scale": p["scale"], "setting": layout.setting(p),
            "rows": rows, "mean": mean, "curves": curves,
            "published_mean": dict(zip(("baseline", "task_vector", "icl"), published)) if published else None,
            "scoring": "first greedy token; exact match (prefix match for knowledge tasks); translation without "
                       "WordNet synonyms: exact match"}


def _stat(d: dict) -> dict:
    return {k: d[k] for k in ("acc", "n", "lo", "hi")}


def _flat(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            for k in ("acc", "lo", "hi", "n"):
                out[f"{key}_{k}"] = value.get(k)
        else:
            out[key] = value
    return out


MAIN_COLUMNS = ["task", "family", "baseline_acc", "baseline_lo", "baseline_hi", "baseline_n",
                "icl_acc", "icl_lo", "icl_hi", "icl_n", "task_vector_acc", "task_vector_lo", "task_vector_hi",
                "task_vector_n", "best_layer", "n_layers", "best_depth", "usable_pairs"]


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print rows of ready-formatted cells under ``columns`` as a rich table."""
    from plugins.common.tables import rows_table

    print(rows_table([dict(zip(columns, r)) for r in rows], title), end="")


def report(ctx) -> None:
    """The results table (CSV, JSON, printed) and the accuracy-vs-layer figure."""
    from plugins.task_vector_patching.plots import plot_layer_curves

    p = ctx.params
    res = collect(p, ctx.workspace.root)
    files = {k: ctx.path(v) for k, v in layout.report_files(p).items()}
    write_json(files["json"], res)
    write_csv(files["csv"], [_flat(r) for r in res["rows"] + [res["mean"]]], MAIN_COLUMNS)
    with atomic_path(files["png"]) as tmp:
        plot_layer_curves(res, tmp)
    rows = [[r["task"], fmt(r["baseline"]), fmt(r["icl"]), fmt(r["task_vector"]),
             f"{r['best_layer']}/{r['n_layers']}"] for r in res["rows"]]
    m = res["mean"]
    rows.append(["mean", fmt(m["baseline"]), fmt(m["icl"]), fmt(m["task_vector"]), ""])
    if res["published_mean"]:
        pub = res["published_mean"]
        rows.append(["published mean", f"{pub['baseline']:.2f}", f"{pub['icl']:.2f}", f"{pub['task_vector']:.2f}", ""])
    print_table(f"task vectors, {p['model']}, {layout.mode_key(p)} ({layout.setting(p)}); accuracy [95% CI] n",
                ["task", "baseline", "ICL", "task vector (test, best dev layer)", "layer"], rows)
    print(f"wrote {files['csv']}\n      {files['json']}\n      {files['png']}", flush=True)


# --------------------------------------------------------------------------- conflicting tasks


def _pairs(p: dict) -> list[tuple[str, str]]:
    out = []
    for text in p["pairs"]:
        a, sep, b = text.partition(":")
        if not sep or not a or not b:
            raise ValueError(f"pairs: write each pair as original:overriding (e.g. next_letter:to_upper), not {text!r}")
        out.append((a, b))
    return out


def conflicting(ctx) -> None:
    """Demos of task A, θ of task B patched in at B's best layer: how often does the output follow B?"""
    from plugins.task_vector_patching.method import (
        decode_tokens, encode, first_token_predictions, patched_predictions, task_vectors,
    )

    p = ctx.params
    model, tok = load(ctx)
    fmt_, sep, k, dq = p["prompt_format"], p["separator"], p["num_demos"], p["num_dummy_queries"]
    pairs = _pairs(p)
    names = list(dict.fromkeys([t for pair in pairs for t in pair]))
    tasks = {n: prepared_task(n, tok, ctx.workspace.root, p) for n in names}
    state = ctx.checkpoint.load("state", {"rows": {}})
    # θ on dev datasets of every task: B's layer choice, and the additive centre
    dev_sets = {n: sample_datasets(tasks[n], p["dev_size"], k, dq, seed=_seed(p, n, "dev")) for n in names}
    dev_vec = {n: task_vectors(model, tok, dev_sets[n], fmt_, sep, p["batch_size"]) for n in names}
    additive = additive_vectors(dev_vec) if p["patch_mode"] == "add" else None
    n_layers = next(iter(dev_vec.values())).shape[1]
    layers = list(range(n_layers))
    rows = []
    for a, b in ctx.progress(pairs, description="conflicting tasks"):
        key = f"{a}:{b}"
        if key in state["rows"]:
            rows.append(state["rows"][key])
            continue
        ta, tb = tasks[a], tasks[b]
        # B's best layer: query-only patch on B's dev datasets
        dev = dev_sets[b]
        seqs = encode(tok, [build_prompt([], ds["query"][0], fmt_, sep) for ds in dev])
        vec = dev_vec[b] if additive is None else additive[b].expand(len(dev), -1, -1)
        preds = patched_predictions(model, seqs, vec, layers, p["patch_mode"], p["scale"], p["batch_size"])
        accs = [sum(is_correct(w, ds["query"][1], tb.allow_prefix)
                    for w, ds in zip(decode_tokens(tok, preds[layer]), dev)) / len(dev) for layer in layers]
        best = max(layers, key=lambda layer: (accs[layer], -layer))
        # A's test datasets on inputs B also maps; B's θ from B's own demos on the same queries
        shared = [x for x, _ in ta.pairs if x in tb.mapping]
        if len(shared) < 1:
            raise TaskError(f"tasks {a} and {b} share no input, so B(x) is undefined for A's queries")
        rng_queries = sample_datasets(Task(a, ta.family, [(x, ta.mapping[x]) for x in shared]), p["test_size"], 0, 0,
                                      seed=_seed(p, key, "queries"))
        queries = [ds["query"][0] for ds in rng_queries]
        sets_a = sample_datasets(ta, len(queries), k, dq, seed=_seed(p, key, "a"), queries=queries)
        sets_b = sample_datasets(tb, len(queries), k, dq, seed=_seed(p, key, "b"), queries=queries)
        prompts = encode(tok, [build_prompt([tuple(d) for d in ds["demos"]], ds["query"][0], fmt_, sep) for ds in sets_a])
        icl_words = decode_tokens(tok, first_token_predictions(model, tok, prompts, p["batch_size"]))
        if additive is None:
            vec_b = task_vectors(model, tok, sets_b, fmt_, sep, p["batch_size"])[:, best:best + 1]
        else:
            vec_b = additive[b][best].reshape(1, 1, -1).expand(len(queries), 1, -1)
        tv_words = decode_tokens(tok, patched_predictions(model, prompts, vec_b, [best], p["patch_mode"], p["scale"],
                                                          p["batch_size"])[0])
        row: dict[str, Any] = {"original": a, "overriding": b, "layer": best, "n_layers": n_layers,
                               "overriding_dev_acc_at_layer": accs[best]}
        for cond, words in (("icl", icl_words), ("tv", tv_words)):
            row[f"{cond}_original"] = accuracy([is_correct(w, ta.mapping[q], ta.allow_prefix)
                                                for w, q in zip(words, queries)], seed=p["seed"])
            row[f"{cond}_overriding"] = accuracy([is_correct(w, tb.mapping[q], tb.allow_prefix)
                                                  for w, q in zip(words, queries)], seed=p["seed"])
        rows.append(row)
        state["rows"][key] = row
        ctx.checkpoint.save("state", state)
    files = {k: ctx.path(v) for k, v in layout.conflicting_files(p).items()}
    write_json(files["json"], {"model": p["model"], "patch_mode": p["patch_mode"], "scale": p["scale"],
                               "setting": layout.setting(p), "rows": rows})
    write_csv(files["csv"], [_flat(r) for r in rows],
              ["original", "overriding", "layer", "n_layers"] +
              [f"{c}_{w}_{s}" for c in ("icl", "tv") for w in ("original", "overriding") for s in ("acc", "lo", "hi", "n")])
    from plugins.task_vector_patching.plots import plot_conflicting

    with atomic_path(files["png"]) as tmp:
        plot_conflicting(rows, tmp, title=f"{p['model']}, {layout.mode_key(p)}")
    print_table(f"conflicting tasks, {p['model']}, {layout.mode_key(p)}: accuracy vs original (A) / overriding (B)",
                ["A -> B", "layer", "ICL: A", "ICL: B", "task vector: A", "task vector: B"],
                [[f"{r['original']} -> {r['overriding']}", str(r["layer"]), fmt(r["icl_original"]),
                  fmt(r["icl_overriding"]), fmt(r["tv_original"]), fmt(r["tv_overriding"])] for r in rows])
    print(f"wrote {files['csv']}\n      {files['json']}\n      {files['png']}", flush=True)


# --------------------------------------------------------------------------- robustness


def robustness_extract(ctx) -> None:
    """θ from many demonstration sets per task, every layer."""
    import torch

    from plugins.task_vector_patching.method import task_vectors

    p = ctx.params
    model, tok = load(ctx)
    out = {}
    for name in ctx.progress(p["tasks"], description="robustness: task vectors"):
        part = ctx.checkpoint.path(f"{name}.safetensors")
        if part.exists():
            out[name] = _read_tensors(part)["v"]
            continue
        task = prepared_task(name, tok, ctx.workspace.root, p)
        sets = sample_datasets(task, p["num_sets"], p["num_demos"], p["num_dummy_queries"], seed=_seed(p, name, "rob"))
        out[name] = task_vectors(model, tok, sets, p["prompt_format"], p["separator"], p["batch_size"])
        from safetensors.torch import save_file

        with atomic_path(part) as tmp:
            save_file({"v": out[name].contiguous()}, str(tmp))
    _write_tensors(ctx.path(layout.robustness_files(p)["vectors"]), {n: v.to(torch.float32) for n, v in out.items()},
                   {"model": p["model"], "tasks": list(out), "shape": "[sets, layers, hidden]",
                    "num_demos": p["num_demos"], "num_sets": p["num_sets"], "seed": p["seed"]})


def _cosine_distances(vectors: dict, layer: int):
    import torch

    names = list(vectors)
    x = torch.cat([vectors[n][:, layer] for n in names]).double()
    labels = torch.cat([torch.full((len(vectors[n]),), i) for i, n in enumerate(names)])
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    dist = 1 - x @ x.T
    same = labels[:, None] == labels[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    return dist[same & upper].numpy(), dist[~same & upper].numpy(), x.float().numpy(), labels.numpy(), names


def robustness_analyse(ctx) -> None:
    """Within- vs between-task cosine distances per layer; histogram and 2-D projection at one layer."""
    import numpy as np

    from plugins.task_vector_patching.plots import plot_distances, plot_projection

    p = ctx.params
    files = {k: ctx.path(v) for k, v in layout.robustness_files(p).items()}
    vectors = _read_tensors(files["vectors"])
    vectors = {n: vectors[n] for n in p["tasks"]}
    n_layers = next(iter(vectors.values())).shape[1]
    layer = resolve_layer_param(p["layer"], n_layers)
    per_layer = []
    for L in range(n_layers):
        within, between, *_ = _cosine_distances(vectors, L)
        per_layer.append({"layer": L, "within_mean": float(within.mean()), "between_mean": float(between.mean()),
                          "ratio_between_over_within": float(between.mean() / max(within.mean(), 1e-12))})
    within, between, x, labels, names = _cosine_distances(vectors, layer)
    # nearest task centroid (leave-one-out): how separable the task vectors are at this layer
    centroids = np.stack([x[labels == i].mean(0) for i in range(len(names))])
    hits = []
    for i in range(len(x)):
        c = centroids.copy()
        own = labels[i]
        c[own] = (centroids[own] * (labels == own).sum() - x[i]) / max(1, (labels == own).sum() - 1)
        hits.append(int(np.argmax(c @ x[i] / np.linalg.norm(c, axis=1).clip(1e-12)) == own))
    result = {"model": p["model"], "layer": layer, "n_layers": n_layers, "tasks": names,
              "num_sets": p["num_sets"], "num_demos": p["num_demos"],
              "within": {"mean": float(within.mean()), "n_pairs": int(within.size)},
              "between": {"mean": float(between.mean()), "n_pairs": int(between.size)},
              "nearest_centroid": accuracy(hits, seed=p["seed"]), "per_layer": per_layer,
              "projection": p["projection"]}
    write_json(files["json"], result)
    with atomic_path(files["distances"]) as tmp:
        plot_distances(within, between, tmp, title=f"{p['model']}, layer {layer}")
    with atomic_path(files["projection"]) as tmp:
        plot_projection(x, labels, names, tmp, method=p["projection"], seed=p["seed"],
                        title=f"{p['model']}, task vectors at layer {layer}")
    print_table(f"task-vector robustness, {p['model']}: cosine distance within vs between tasks",
                ["layer", "within", "between", "between/within"],
                [[str(r["layer"]) + (" *" if r["layer"] == layer else ""), f"{r['within_mean']:.3f}",
                  f"{r['between_mean']:.3f}", f"{r['ratio_between_over_within']:.2f}"] for r in per_layer])
    print(f"layer {layer}: nearest task centroid (leave-one-out) {fmt(result['nearest_centroid'])}")
    print(f"wrote {files['json']}\n      {files['distances']}\n      {files['projection']}", flush=True)


def resolve_layer_param(value: Any, n_layers: int) -> int:
    text = str(value)
    if text == "middle":
        return n_layers // 2
    try:
        layer = int(text)
    except ValueError:
        raise ValueError(f"layer must be an index or 'middle', not {value!r}") from None
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer {layer} is outside the model's {n_layers} layers")
    return layer % n_layers


# --------------------------------------------------------------------------- paper comparison


def compare(ctx) -> None:
    """Mean over tasks per model next to the published numbers (the paper's main table)."""
    p = ctx.params
    rows = []
    for model in p["models"]:
        q = {**p, "model": model}
        res = collect(q, ctx.workspace.root)
        m = res["mean"]
        pub = published_for(model)
        rows.append({"model": model, "tasks": m["baseline"].get("tasks"),
                     **{c: m[c] for c in ("baseline", "task_vector", "icl")},
                     "tv_over_icl": m["task_vector"]["acc"] / m["icl"]["acc"] if m["icl"]["acc"] else None,
                     "mean_best_depth": sum(r["best_depth"] for r in res["rows"]) / len(res["rows"]),
                     "published": dict(zip(("baseline", "task_vector", "icl"), pub)) if pub else None})
    files = {k: ctx.path(v) for k, v in layout.paper_files(p).items()}
    write_json(files["json"], {"patch_mode": p["patch_mode"], "tasks": p["tasks"], "rows": rows})
    flat = []
    for r in rows:
        f = _flat({k: v for k, v in r.items() if k != "published"})
        for c in ("baseline", "task_vector", "icl"):
            f[f"published_{c}"] = r["published"][c] if r["published"] else ""
        flat.append(f)
    write_csv(files["csv"], flat)
    print_table("mean over tasks: measured [95% CI] (published)", ["model", "baseline", "task vector", "ICL", "TV/ICL"],
                [[r["model"]] + [fmt(r[c]) + (f" ({r['published'][c]:.2f})" if r["published"] else "")
                                 for c in ("baseline", "task_vector", "icl")] + [f"{r['tv_over_icl']:.2f}"]
                 for r in rows])
    print(f"wrote {files['csv']}\n      {files['json']}", flush=True)
