"""Data-parallel candidate directions: N processes, each streams its shard of the prompts.

Every process loads the model (on GPU ``rank`` when there are enough GPUs,
else as the job's device map says), reduces every ``N``-th prompt into its
own :class:`models.accumulators.Accumulator` and saves it; the accumulators
hold float64 sums, so merging them gives the single-process statistics up
to summation order. Shards already saved by a killed run are not redone.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

SHARD_META = "shard"


def shard_path(ctx: Any, rank: int, world: int) -> Path:
    return ctx.checkpoint.path(f"shard-{rank}-of-{world}.safetensors")


def run_shard(workspace_root: str, params: dict[str, Any], device_map: Any, rank: int, world: int,
              out: str) -> None:
    """Process entry point: one shard of the prompts into an accumulator file."""
    import torch

    from models.accumulators import Accumulator
    from plugins.common.extraction import encode, is_huginn, layer_table, load, load_prompts, reduce_batches
    from runner.atomic import atomic_path
    from runner.jobs import DeviceMap
    from runner.workspace import Workspace

    torch.set_num_threads(1)  # N processes share the machine's cores
    workspace = Workspace.open(workspace_root)
    placement = DeviceMap(f"cuda:{rank}") if torch.cuda.device_count() >= world else DeviceMap.parse(device_map)
    model, tokenizer = load(workspace, params, placement)
    prompts = encode(load_prompts(workspace, params["dataset"], params.get("prompt_template", "extraction"),
                                  params.get("sample_size"), params.get("seed", 0), tokenizer, params["model"]),
                     tokenizer)
    acc = Accumulator()
    for batch, values in reduce_batches(model, tokenizer, prompts[rank::world], params["mode"],
                                        params["batch_size"], init_scale=params.get("init_scale", 1.0),
                                        seed=params.get("seed", 0), padding_side=params.get("padding_side", "left")):
        acc.update(values, [q.label for q in batch])
    embeddings = model.get_input_embeddings().weight
    meta = {"layers": layer_table(model), "model_type": getattr(model.config, "model_type", ""),
            "num_steps": int(model.config.mean_recurrence) if is_huginn(model) else None,
            "dtype": str(embeddings.dtype).removeprefix("torch."), "hidden_size": int(embeddings.shape[-1]),
            "count": len(prompts)}
    with atomic_path(out) as tmp:
        acc.save(tmp, metadata={SHARD_META: meta})


def accumulate_in_parallel(ctx: Any, world: int) -> tuple[Any, dict[str, Any]]:
    """Run the missing shards in ``world`` processes; return (merged accumulator, shard metadata)."""
    from safetensors import safe_open

    from models.accumulators import Accumulator

    paths = [shard_path(ctx, rank, world) for rank in range(world)]
    missing = [rank for rank, path in enumerate(paths) if not path.exists()]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    processes = [context.Process(target=run_shard, name=f"shard-{rank}",
                                 args=(str(ctx.workspace.root), dict(ctx.params), ctx.device_map.to_json(),
                                       rank, world, str(paths[rank])))
                 for rank in missing]
    ctx.logger.info("data-parallel: %d processes (%d shard(s) already done)", world, world - len(missing))
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.name for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"data-parallel shard process(es) failed: {', '.join(failed)}")
    with safe_open(str(paths[0]), framework="pt") as handle:
        meta = json.loads(handle.metadata()[SHARD_META])
    return Accumulator.merged(Accumulator.load(p) for p in paths), meta
