"""Candidate directions: per layer, mean(reasoning) − mean(memorizing), streamed or from saved states.

Two sub-jobs write the same file (see :mod:`plugins.common.directions_format`):

* :func:`from_model` — one pass over the prompts with an
  :class:`models.accumulators.Accumulator` (float64 class-conditional sums),
  O(layers × hidden) memory whatever N; checkpointed every
  ``checkpoint_seconds`` so a killed run continues where it stopped;
* :func:`from_hidden_states` — the same statistics from a folder written by
  ``save_hidden_states``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Sequence

from plugins.common.directions_format import complete, write_directions
from plugins.common.hidden_states import LABELS, MEMORIZING, REASONING, open_hidden_states


def directions_from_accumulator(acc: Any, layers: Sequence[Mapping[str, Any]]) -> dict[Any, dict[str, Any]]:
    """``{layer: {kind: tensor}}`` from class-conditional sums (float64)."""
    missing = [label for label in LABELS if acc.class_counts.get(label, 0) == 0]
    if missing:
        raise ValueError(f"no {' and no '.join(missing)} prompts: a direction needs both classes "
                         f"(counts: {acc.class_counts})")
    out: dict[Any, dict[str, Any]] = {}
    for entry in layers:
        key = entry["key"]
        means = acc.class_means(key)
        overall = acc.mean(key)
        direction = means[REASONING] - means[MEMORIZING]
        out[key] = {"reasoning_mean": means[REASONING], "memorizing_mean": means[MEMORIZING],
                    "overall_mean": overall, "direction": direction, **complete(direction, overall)}
    return out


def write_outputs(ctx: Any, acc: Any, layers: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from plugins.candidate_directions.plots import plot_norms

    path_st, _path_json, path_png = ctx.writes[:3]
    per_layer = directions_from_accumulator(acc, layers)
    meta = {"kind": "candidate_directions", **meta,
            "counts": {"total": acc.count, **{k: acc.class_counts.get(k, 0) for k in LABELS}},
            "plot": str(path_png)}
    sidecar = write_directions(path_st, per_layer, layers, meta)
    names = [entry["name"] if entry["key"] == "embed" else str(entry["key"]) for entry in layers]
    plot_norms(path_png, names, sidecar["norms"]["direction"], sidecar["norms"]["overall_mean"],
               f"{meta.get('model')} · {meta.get('dataset')} · {meta.get('mode')}: candidate directions "
               f"(n={acc.count})")
    best = max(range(len(layers)), key=lambda i: sidecar["norms"]["direction"][i]
               / max(sidecar["norms"]["overall_mean"][i], 1e-30))
    ctx.logger.info("candidate directions of %d layers (%d reasoning, %d memorizing prompts) -> %s",
                    len(layers), acc.class_counts.get(REASONING, 0), acc.class_counts.get(MEMORIZING, 0), path_st)
    ctx.logger.info("largest ‖direction‖/‖overall mean‖ at layer %s (%s); plot: %s", layers[best]["key"],
                    layers[best]["name"], path_png)


def from_model(ctx: Any) -> None:
    """Sub-job: stream the prompts through the model once, accumulate class-conditional means."""
    from safetensors import safe_open

    from models.accumulators import Accumulator
    from plugins.common.extraction import Timer, encode, load, load_prompts, model_facts, reduce_batches, run_info
    from runner.atomic import atomic_path

    p = ctx.params
    if p.get("num_processes", 1) > 1:
        from plugins.candidate_directions.parallel import accumulate_in_parallel

        acc, facts = accumulate_in_parallel(ctx, p["num_processes"])
        info = run_info(ctx, facts, [])
        info.update(count=acc.count, num_processes=p["num_processes"], source="model")
        info.pop("class_counts", None)
        write_outputs(ctx, acc, facts["layers"], info)
        return
    model, tokenizer = load(ctx.workspace, p, ctx.device_map)
    prompts = encode(load_prompts(ctx.workspace, p["dataset"], p.get("prompt_template", "extraction"),
                                  p.get("sample_size"), p.get("seed", 0), tokenizer, p["model"]), tokenizer)
    facts = model_facts(model)
    layers = facts["layers"]
    state_path = ctx.checkpoint.path("accumulator.safetensors")
    acc, start = Accumulator(), 0
    if state_path.exists():
        with safe_open(str(state_path), framework="pt") as handle:
            saved = int(json.loads((handle.metadata() or {}).get("rows_done", "0")))
        if 0 < saved <= len(prompts):
            acc, start = Accumulator.load(state_path), saved
            ctx.logger.info("resuming after %d of %d prompts (checkpoint)", start, len(prompts))
    timer = Timer(p.get("checkpoint_seconds", 30.0))
    done = start
    began = time.monotonic()
    for batch, values in reduce_batches(model, tokenizer, prompts[start:], p["mode"], p["batch_size"],
                                        init_scale=p.get("init_scale", 1.0), seed=p.get("seed", 0),
                                        padding_side=p.get("padding_side", "left"),
                                        progress=lambda items, n: ctx.progress(items, total=n,
                                                                               description=f"{ctx.job}: directions")):
        acc.update(values, [q.label for q in batch])
        done += len(batch)
        if timer.due() and done < len(prompts):
            with atomic_path(state_path) as tmp:  # sums and the row count in one file: never out of step
                acc.save(tmp, metadata={"rows_done": done})
    seconds = time.monotonic() - began
    ctx.logger.info("%d prompts in %.1f s (%.1f prompts/s)", done - start, seconds, (done - start) / max(seconds, 1e-9))
    info = run_info(ctx, facts, prompts)
    info.pop("class_counts", None)
    write_outputs(ctx, acc, layers, {**info, "source": "model"})


def from_hidden_states(ctx: Any) -> None:
    """Sub-job: the same directions from a folder written by ``save_hidden_states``."""
    hs = open_hidden_states(ctx.reads[0])
    acc = hs.accumulator()
    meta = {k: hs.meta.get(k) for k in ("model", "model_dir", "model_type", "dataset", "mode", "reduction",
                                        "prompt_template", "num_steps", "dtype", "hidden_size", "count")}
    meta.update(source="hidden_states", hidden_states=str(ctx.reads[0]), params=dict(ctx.params),
                run_id=ctx.run_id)
    write_outputs(ctx, acc, [dict(e) for e in hs.meta["layers"]], meta)
