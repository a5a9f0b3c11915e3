"""Data-parallel candidate directions: N processes, each streams every N-th prompt.

Each process reduces its prompts into its own
:class:`models.accumulators.Accumulator` and saves it; the accumulators hold
float64 sums, so merging them gives the single-process statistics up to
summation order. Shards already saved by a killed run are not redone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SHARD_META = "shard"


def shard_path(ctx: Any, rank: int, world: int) -> Path:
    return ctx.checkpoint.path(f"shard-{rank}-of-{world}.safetensors")


def run_shard(workspace_root: str, params: dict[str, Any], device_map: Any, rank: int, world: int,
              out: str) -> None:
    """Process entry point: every ``world``-th prompt from ``rank`` into an accumulator file."""
    from models.accumulators import Accumulator
    from plugins.common.extraction import model_facts, reduce_batches
    from plugins.common.parallel import worker_setup
    from runner.atomic import atomic_path

    _workspace, model, tokenizer, prompts = worker_setup(workspace_root, params, device_map, rank, world)
    acc = Accumulator()
    for batch, values in reduce_batches(model, tokenizer, prompts[rank::world], params["mode"],
                                        params["batch_size"], init_scale=params.get("init_scale", 1.0),
                                        seed=params.get("seed", 0), padding_side=params.get("padding_side", "left")):
        acc.update(values, [q.label for q in batch])
    with atomic_path(out) as tmp:
        acc.save(tmp, metadata={SHARD_META: model_facts(model)})


def accumulate_in_parallel(ctx: Any, world: int) -> tuple[Any, dict[str, Any]]:
    """Run the missing shards in ``world`` processes; return (merged accumulator, model facts)."""
    from safetensors import safe_open

    from models.accumulators import Accumulator
    from plugins.common.parallel import run_processes

    paths = [shard_path(ctx, rank, world) for rank in range(world)]
    missing = [rank for rank, path in enumerate(paths) if not path.exists()]
    ctx.logger.info("data-parallel: %d processes (%d shard(s) already done)", world, world - len(missing))
    run_processes(run_shard, [(str(ctx.workspace.root), dict(ctx.params), ctx.device_map.to_json(), rank, world,
                               str(paths[rank])) for rank in missing], "directions")
    with safe_open(str(paths[0]), framework="pt") as handle:
        facts = json.loads(handle.metadata()[SHARD_META])
    return Accumulator.merged(Accumulator.load(p) for p in paths), facts
