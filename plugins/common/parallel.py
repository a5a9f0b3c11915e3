"""Data-parallel extraction: N fresh processes, each with the model and every N-th unit of work.

Shared by ``save_hidden_states`` (every N-th shard) and
``candidate_directions`` (every N-th prompt). Each process gets one GPU
when the machine has at least N, else the job's device map; results go to
files (atomically), which the parent combines exactly.
"""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Sequence


def run_processes(target: Callable[..., None], args_per_rank: Sequence[tuple], what: str) -> None:
    """Run ``target(*args)`` once per rank, each in a spawned interpreter; raise if any failed."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    processes = [context.Process(target=target, name=f"{what}-{rank}", args=args)
                 for rank, args in enumerate(args_per_rank)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [f"{p.name} (exit code {p.exitcode})" for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"data-parallel process(es) failed: {', '.join(failed)}")


def worker_setup(workspace_root: str, params: dict[str, Any], device_map: Any, rank: int,
                 world: int) -> tuple[Any, Any, Any, list]:
    """In a worker: ``(workspace, model, tokenizer, encoded prompts)`` for the extraction params."""
    import torch

    from plugins.common.extraction import encode, load, load_prompts
    from runner.jobs import DeviceMap
    from runner.workspace import Workspace

    torch.set_num_threads(1)  # N processes share the machine's cores
    workspace = Workspace.open(workspace_root)
    placement = DeviceMap(f"cuda:{rank}") if torch.cuda.device_count() >= world else DeviceMap.parse(device_map)
    model, tokenizer = load(workspace, params, placement)
    prompts = encode(load_prompts(workspace, params["dataset"], params.get("prompt_template", "extraction"),
                                  params.get("sample_size"), params.get("seed", 0), tokenizer, params["model"]),
                     tokenizer)
    return workspace, model, tokenizer, prompts
