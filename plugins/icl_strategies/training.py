"""Train one grid cell: online batches, AdamW, √-spaced checkpoints, resumable mid-way.

``models.training.train_tiny`` trains language models on a fixed corpus and
saves once at the end; a grid cell here needs fresh sequences every step,
setting-specific read-in/read-out models, a checkpoint schedule and
mid-training resume, so it has its own loop. Resume is exact: the model and
AdamW state (safetensors) and the numpy batch generator's state (JSON) are
saved together, so a killed and resumed cell ends with the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugins.icl_strategies.data import TaskSet, rng, sample_batch
from plugins.icl_strategies.modeling import build_model, save_checkpoint
from runner.atomic import atomic_path, write_json
from runner.context import CheckpointStore

log = logging.getLogger("latentrun")


def sqrt_schedule(max_steps: int, num_checkpoints: int, first: int = 1) -> list[int]:
    """Checkpoint steps evenly spaced in √step from ``first`` to ``max_steps`` (unique, sorted)."""
    roots = np.linspace(np.sqrt(min(first, max_steps)), np.sqrt(max_steps), num_checkpoints)
    return sorted({int(round(r * r)) for r in roots} | {max_steps})


def checkpoint_folder(cell_dir: Path, step: int) -> Path:
    return cell_dir / "checkpoints" / f"checkpoint-{step}"


def _save_state(store: CheckpointStore, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                generator: np.random.Generator, losses: list[list[float]], seconds: float) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).cpu().contiguous()
    with atomic_path(store.path(f"state-{step}.safetensors")) as tmp:
        save_file(tensors, str(tmp))
    store.save("train", {"step": step, "generator": generator.bit_generator.state, "losses": losses,
                         "param_groups": opt_state["param_groups"], "seconds": seconds})
    for old in store.folder.glob("state-*.safetensors"):
        if old.name != f"state-{step}.safetensors":
            old.unlink(missing_ok=True)


def _load_state(store: CheckpointStore, model: torch.nn.Module, opt: torch.optim.Optimizer,
                generator: np.random.Generator) -> tuple[int, list[list[float]], float]:
    from safetensors.torch import load_file

    saved = store.load("train")
    if not saved or not store.path(f"state-{saved['step']}.safetensors").exists():
        return 0, [], 0.0
    tensors = load_file(str(store.path(f"state-{saved['step']}.safetensors")))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    generator.bit_generator.state = saved["generator"]
    return int(saved["step"]), saved["losses"], float(saved["seconds"])


def train_cell(taskset: TaskSet, cell_dir: Path, store: CheckpointStore, *, context_length: int,
               mlp_expansion_factor: float, max_steps: int, seed: int, batch_size: int = 64, lr: float = 1e-3,
               warmup_steps: int = 100, num_checkpoints: int = 40, state_seconds: float = 60.0,
               device: str = "cpu", settings: dict[str, Any] | None = None) -> Path:
    """Train on ``taskset`` and write √-spaced checkpoints and ``training_log.json`` under ``cell_dir``.

    Constant learning rate after a linear warmup, AdamW without weight decay,
    gradient clipping at 1 (the paper's recipe). The resumable state goes to
    ``store`` at every scheduled checkpoint and at least every ``state_seconds``.
    One CPU thread: the models are tiny, and a grid shares the machine.
    """
    torch.set_num_threads(1)
    model = build_model(taskset.setting, taskset.num_dims, context_length, mlp_expansion_factor, seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = rng(seed, "train-batches", taskset.num_dims, taskset.num_tasks)
    start, losses, seconds = _load_state(store, model, opt, generator)
    if start:
        log.info("resuming %s at step %d/%d", cell_dir.name, start, max_steps)
    schedule = sqrt_schedule(max_steps, num_checkpoints)
    model.train()
    began = last_save = time.monotonic()
    running, counted = 0.0, 0
    for step in range(start + 1, max_steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, step / max(1, warmup_steps))
        loss, _ = model.loss_and_predictions(sample_batch(taskset, batch_size, context_length, generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running, counted = running + loss.item(), counted + 1
        if step % 50 == 0 or step == max_steps:
            losses.append([step, running / counted])
            running, counted = 0.0, 0
        if step in schedule:
            save_checkpoint(model, checkpoint_folder(cell_dir, step), step)
        if step in schedule or time.monotonic() - last_save > state_seconds:
            _save_state(store, model, opt, step, generator, losses, seconds + time.monotonic() - began)
            last_save = time.monotonic()
    seconds += time.monotonic() - began
    record = {"setting": taskset.setting, "num_tasks": taskset.num_tasks, "num_dims": taskset.num_dims,
              "context_length": context_length, "mlp_expansion_factor": mlp_expansion_factor,
              "max_steps": max_steps, "seed": seed, "batch_size": batch_size, "lr": lr,
              "warmup_steps": warmup_steps, "device": device, "checkpoints": schedule, "seconds": round(seconds, 1),
              "num_parameters": sum(p.numel() for p in model.parameters()), **(settings or {}),
              "losses": losses}
    return write_json(cell_dir / "training_log.json", record)


def read_training_log(cell_dir: Path) -> dict[str, Any]:
    return json.loads((cell_dir / "training_log.json").read_text())
