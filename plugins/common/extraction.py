"""Run a causal LM over prompts and reduce every layer's residual stream in the hook.

The one extraction loop behind ``save_hidden_states``, the streaming
candidate directions and the linear probes:

* prompts are tokenized once, ordered longest first (then by data-set index)
  and padded per batch on ``padding_side`` with an attention mask, so every
  batch is as short as it can be and the order does not depend on the batch size;
* ``embed`` and every layer of DESIGN.md's numbering are captured with
  :func:`models.capture.capture`, reduced inside the hook to the last real
  token (``FIRST_ANSWER_TOKEN``) or the mean over real tokens (``ALL_TOKENS``),
  so a batch costs ``layers x batch x hidden`` numbers;
* Huginn runs at ``num_steps`` with its random initial state drawn *per
  prompt* from ``(seed, item index)``, so a prompt's states are the same alone
  or in any padded batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from models.capture import capture
from plugins.common.hidden_states import (
    FORMAT, REDUCTION, SIDECAR, TEMPLATES, encode_key,
)
from runner.atomic import atomic_path, write_json

HUGINN = "huginn_raven"


@dataclass
class Prompt:
    """One prompt: its data-set index, text, label and (once encoded) token ids."""

    index: int
    text: str
    label: str
    ids: list[int] | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


# -- data ----------------------------------------------------------------------


def load_prompts(workspace: Any, dataset: str, template: str = "extraction", sample_size: int | None = None,
                 seed: int = 0, tokenizer: Any = None, model_name: str = "") -> list[Prompt]:
    """Prompts of ``W/datasets/lirefs/<dataset>.json`` built with ``plugins.common.prompts``."""
    from plugins.common.lirefs import FEW_SHOT_DIR, load_few_shot, load_lirefs
    from plugins.common.prompts import build_prompt, template_for

    if template not in TEMPLATES:
        raise ValueError(f"prompt_template {template!r}: use one of {', '.join(TEMPLATES)}")
    items = load_lirefs(workspace.path(f"datasets/lirefs/{dataset}.json"), sample_size=sample_size, seed=seed)
    few_shot: dict[str, list] = {}
    if template == "evaluation":
        folder = workspace.path(FEW_SHOT_DIR)
        if folder.exists():
            few_shot = load_few_shot(folder)
    name = template_for(template, model_name)  # the seed's Llama form has one newline before "A:"
    prompts = []
    for item in items:
        kwargs: dict[str, Any] = {"tokenizer": tokenizer}
        if few_shot:
            kwargs["few_shot"] = few_shot.get(item.category, ())
        prompts.append(Prompt(int(item.index), build_prompt(item, name, **kwargs), str(item.label)))
    return prompts


def encode(prompts: Sequence[Prompt], tokenizer: Any) -> list[Prompt]:
    """Tokenize (with the tokenizer's special tokens, e.g. BOS) and order longest first."""
    texts = [p.text for p in prompts]
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"] if texts else []
    for prompt, row in zip(prompts, ids):
        prompt.ids = list(row)
        if not prompt.ids:
            raise ValueError(f"item {prompt.index}: the prompt encodes to no tokens")
    return sorted(prompts, key=lambda p: (-len(p.ids or ()), p.index))


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    size = max(1, int(size))
    return [items[i:i + size] for i in range(0, len(items), size)]


def pad(rows: Sequence[Sequence[int]], pad_id: int, side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` padded on ``side``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        cols = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


# -- model -----------------------------------------------------------------------


def is_huginn(model: Any) -> bool:
    return getattr(getattr(model, "config", None), "model_type", "") == HUGINN


def prepare_model(model: Any, num_steps: int | None) -> Any:
    """Fix Huginn's depth: layers are numbered (and run) for ``num_steps``."""
    if is_huginn(model) and num_steps is not None:
        model.config.mean_recurrence = int(num_steps)
    return model


def load(workspace: Any, params: dict[str, Any], device_map: Any) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for the extraction params, in eval mode."""
    from models.loading import load_model

    model, tokenizer = load_model(params["model"], workspace=workspace, device_map=device_map,
                                  dtype=params.get("dtype", "auto"), padding_side=params.get("padding_side", "left"))
    return prepare_model(model, params.get("num_steps")), tokenizer


def layer_table(model: Any) -> list[dict[str, Any]]:
    """``[{"key": "embed", "name": "embed"}, {"key": 0, "name": ...}, ...]`` in DESIGN.md's numbering."""
    from models.layers import get_layers

    return [{"key": "embed", "name": "embed"}] + [{"key": layer.index, "name": layer.name}
                                                  for layer in get_layers(model)]


def _input_device(model: Any) -> torch.device:
    return model.get_input_embeddings().weight.device


def _state_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def huginn_initial_states(model: Any, mask: torch.Tensor, indices: Sequence[int], init_scale: float,
                          seed: int) -> torch.Tensor | None:
    """Huginn's random initial state, drawn per prompt, placed on its real tokens (zeros on padding)."""
    if not init_scale:
        return None
    width = int(model.config.n_embd)
    dtype = model.get_input_embeddings().weight.dtype
    states = torch.zeros(mask.shape[0], mask.shape[1], width, dtype=dtype)
    for row, index in enumerate(indices):
        real = mask[row].bool()
        generator = torch.Generator().manual_seed(_state_seed(seed, index))
        template = torch.empty(1, int(real.sum()), width, dtype=dtype)
        states[row, real] = model.initialize_state(template, init_scale, generator)[0].cpu()
    return states


def reduce_batches(model: Any, tokenizer: Any, prompts: Sequence[Prompt], mode: str, batch_size: int, *,
                   init_scale: float = 1.0, seed: int = 0, padding_side: str = "left",
                   progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
                   ) -> Iterator[tuple[Sequence[Prompt], dict[int | str, torch.Tensor]]]:
    """Yield ``(batch prompts, {"embed" | layer: Tensor[batch, hidden] on CPU})`` in order.

    ``prompts`` must be encoded (:func:`encode`); the model's dtype is kept.
    """
    if mode not in REDUCTION:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(REDUCTION)}")
    from models.layers import get_layers

    keys: list[int | str] = ["embed", *range(len(get_layers(model)))]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = _input_device(model)
    batches = chunks(list(prompts), batch_size)
    iterable: Iterable[Any] = progress(batches, len(batches)) if progress else batches
    huginn = is_huginn(model)
    for batch in iterable:
        ids, mask = pad([p.ids for p in batch], pad_id, padding_side)
        extra: dict[str, Any] = {}
        if huginn:
            extra["num_steps"] = int(model.config.mean_recurrence)
            states = huginn_initial_states(model, mask, [p.index for p in batch], init_scale, seed)
            extra["init_scale"] = 0.0
            if states is not None:
                extra["input_states"] = states.to(device)
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode(), capture(model, keys, reduction=REDUCTION[mode], attention_mask=mask,
                                             device="cpu") as cap:
            model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1, **extra)
        yield batch, {key: cap.values[key] for key in keys}


# -- the save_hidden_states sub-job --------------------------------------------------


def model_facts(model: Any) -> dict[str, Any]:
    """What sidecars record about the model; computed where the model is (maybe another process)."""
    embeddings = model.get_input_embeddings().weight
    return {"model_type": getattr(model.config, "model_type", ""),
            "num_steps": int(model.config.mean_recurrence) if is_huginn(model) else None,
            "dtype": str(embeddings.dtype).removeprefix("torch."), "hidden_size": int(embeddings.shape[-1]),
            "layers": layer_table(model)}


def run_info(ctx: Any, facts: dict[str, Any], prompts: Sequence[Prompt]) -> dict[str, Any]:
    """What a sidecar records about the run that made it (``facts`` from :func:`model_facts`)."""
    p = ctx.params
    info = {
        "model": p["model"], "model_dir": str(ctx.path(f"transformers/{p['model']}")),
        "model_type": facts["model_type"], "dataset": p["dataset"], "mode": p["mode"],
        "reduction": REDUCTION[p["mode"]], "prompt_template": p.get("prompt_template"),
        "num_steps": facts["num_steps"], "dtype": facts["dtype"], "hidden_size": facts["hidden_size"],
        "count": len(prompts),
        "class_counts": {label: sum(1 for q in prompts if q.label == label)
                         for label in sorted({q.label for q in prompts})},
        "params": {k: v for k, v in p.items()},
        "run_id": ctx.run_id,
    }
    return info


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def write_shard(model: Any, tokenizer: Any, shard: Sequence[Prompt], path: Path, params: dict[str, Any],
                on_batch: Callable[[], None] = lambda: None) -> None:
    """Reduce one shard of prompts and save it (atomically) as one tensor per layer."""
    from safetensors.torch import save_file

    parts: dict[int | str, list[torch.Tensor]] = {}
    for _batch, values in reduce_batches(model, tokenizer, shard, params["mode"], params["batch_size"],
                                         init_scale=params.get("init_scale", 1.0), seed=params.get("seed", 0),
                                         padding_side=params.get("padding_side", "left")):
        for key, value in values.items():
            parts.setdefault(key, []).append(value)
        on_batch()
    tensors = {encode_key(key): torch.cat(chunks_).contiguous() for key, chunks_ in parts.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "rows": str(len(shard))})


def shards_worker(workspace_root: str, params: dict[str, Any], device_map: Any, rank: int, world: int,
                  shard_ks: list[int], folder: str) -> None:
    """Data-parallel process: write the given shards; rank 0 also records the model facts."""
    from plugins.common.parallel import worker_setup

    _workspace, model, tokenizer, prompts = worker_setup(workspace_root, params, device_map, rank, world)
    shards = chunks(prompts, int(params.get("shard_size", 256)))
    for k in shard_ks:
        write_shard(model, tokenizer, shards[k], Path(folder) / shard_name(k), params)
    if rank == 0:
        write_json(Path(folder) / "model_facts.json", model_facts(model))


def save_hidden_states(ctx: Any) -> None:
    """Sub-job: every layer's reduced hidden state of every prompt, as sharded safetensors.

    Shards are written (atomically) into the sub-job's checkpoint folder as
    they fill, so memory stays at one shard and a killed run resumes at the
    first missing shard; the finished folder appears at once at the end.
    With ``num_processes`` = N, N processes write every N-th shard.
    """
    p = ctx.params
    target: Path = ctx.writes[0]
    world = int(p.get("num_processes", 1))
    store = ctx.checkpoint.folder
    store.mkdir(parents=True, exist_ok=True)
    if world > 1:  # the workers load the model; here the tokenizer is enough
        from models.loading import load_tokenizer, resolve_model_dir

        model, tokenizer = None, load_tokenizer(resolve_model_dir(p["model"], ctx.workspace))
    else:
        model, tokenizer = load(ctx.workspace, p, ctx.device_map)
    prompts = encode(load_prompts(ctx.workspace, p["dataset"], p.get("prompt_template", "extraction"),
                                  p.get("sample_size"), p.get("seed", 0), tokenizer, p["model"]), tokenizer)
    shard_size = int(p.get("shard_size", 256))
    shards = chunks(prompts, shard_size)
    # A shard file exists only when complete (atomic writes); the layout it was cut with is recorded.
    layout = {"shard_size": shard_size, "count": len(prompts)}
    if ctx.checkpoint.load("shards") != layout:
        for stale in store.glob("shard-*.safetensors"):
            stale.unlink()
        ctx.checkpoint.save("shards", layout)
    todo = [k for k in range(len(shards)) if not (store / shard_name(k)).exists()]
    if len(todo) < len(shards):
        ctx.logger.info("resuming: %d of %d shards were saved before", len(shards) - len(todo), len(shards))
    if world > 1:
        ctx.logger.info("data-parallel: %d processes write %d shard(s)", world, len(todo))
        from plugins.common.parallel import run_processes

        run_processes(shards_worker, [(str(ctx.workspace.root), dict(p), ctx.device_map.to_json(), rank, world,
                                       todo[rank::world], str(store)) for rank in range(world)],
                      "hidden-states")
        facts = json.loads((store / "model_facts.json").read_text())
    else:
        facts = model_facts(model)
        batches_total = sum(math.ceil(len(shards[k]) / p["batch_size"]) for k in todo)
        bar = iter(ctx.progress(range(batches_total), total=batches_total, description=f"{ctx.job}: hidden states"))
        for k in todo:
            write_shard(model, tokenizer, shards[k], store / shard_name(k), p, lambda: next(bar, None))
        for _ in bar:
            pass
    sidecar = {"format": FORMAT, **run_info(ctx, facts, prompts), "layers": facts["layers"],
               "labels": [q.label for q in prompts], "indices": [q.index for q in prompts],
               "prompt_sha256": [q.sha256 for q in prompts],
               "shards": [{"file": shard_name(k), "rows": len(shard)} for k, shard in enumerate(shards)]}
    with atomic_path(target, directory=True) as tmp:
        for entry in sidecar["shards"]:
            _link_or_copy(store / entry["file"], tmp / entry["file"])
        write_json(tmp / SIDECAR, sidecar)
    ctx.logger.info("saved hidden states of %d prompts x %d layers to %s", len(prompts), len(facts["layers"]),
                    target)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copy2(source, target)


class Timer:
    """Call ``due()`` after each unit of work: True at most every ``seconds``."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.last = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            return True
        return False
