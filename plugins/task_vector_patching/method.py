"""The method of Hendel, Geva & Globerson (2023), batched. Imports torch; used inside sub-jobs.

* :func:`first_token_predictions` — greedy first token after each prompt
  (baseline and ICL accuracy).
* :func:`task_vectors` — θ(S): block outputs at the last token of
  ``demos + dummy query`` prompts, all layers in one pass, averaged over the
  dummy queries: ``[n_datasets, n_layers, hidden]``.
* :func:`patched_predictions` — the layer sweep: query-only prompts are
  grouped by token length (no padding, so positions are exact for every
  architecture), the prompt minus its last token is encoded once (KV cache),
  and per layer only the last token is re-run with θ patched in (``replace``:
  ``h <- θ``; ``add``: ``h <- h + scale·v``). :func:`patched_predictions_naive`
  is the reference: one full, unbatched forward per query and layer.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch

from models.capture import capture
from models.layers import get_layers
from models.patching import patch
from plugins.task_vector_patching.tasks import build_prompt


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids as the tokenizer makes them by default (BOS when it adds one, as the paper)."""
    return [list(tokenizer(t)["input_ids"]) for t in texts]


def _right_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _device(model: Any) -> torch.device:
    return model.get_input_embeddings().weight.device


def _pad_id(tokenizer: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0


def _chunks(order: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield list(order[start:start + size])


def _length_groups(seqs: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of equal-length sequences, at most ``batch_size`` per group."""
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_length.setdefault(len(s), []).append(i)
    for length in sorted(by_length):
        yield from _chunks(by_length[length], batch_size)


@torch.no_grad()
def first_token_predictions(model: Any, tokenizer: Any, seqs: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
    """Greedy next token after each sequence: Long ``[n]`` (right padding, last real logits)."""
    out = torch.empty(len(seqs), dtype=torch.long)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    device = _device(model)
    for chunk in _chunks(order, batch_size):
        ids, mask = _right_pad([seqs[i] for i in chunk], _pad_id(tokenizer), device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        last = mask.sum(1) - 1
        out[chunk] = logits[torch.arange(len(chunk), device=device), last].argmax(-1).cpu()
    return out


@torch.no_grad()
def last_token_states(model: Any, tokenizer: Any, seqs: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
    """Every block's output at each sequence's last token: float32 ``[n, n_layers, hidden]`` on CPU."""
    n_layers = len(get_layers(model))
    out: torch.Tensor | None = None
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    device = _device(model)
    for chunk in _chunks(order, batch_size):
        ids, mask = _right_pad([seqs[i] for i in chunk], _pad_id(tokenizer), device)
        with capture(model, "all", reduction="last", device="cpu", dtype=torch.float32) as cap:
            model(input_ids=ids, attention_mask=mask, use_cache=False)
        states = cap.stack().transpose(0, 1)  # [batch, n_layers, hidden]
        if out is None:
            out = torch.empty(len(seqs), n_layers, states.shape[-1])
        out[chunk] = states
    assert out is not None
    return out


def task_vector_prompts(datasets: Sequence[dict], prompt_format: str, separator: str) -> list[str]:
    """For each dataset, one prompt per dummy query: its demos, then the dummy query."""
    return [build_prompt([tuple(d) for d in ds["demos"]], dummy[0], prompt_format, separator)
            for ds in datasets for dummy in ds["dummies"]]


def task_vectors(model: Any, tokenizer: Any, datasets: Sequence[dict], prompt_format: str, separator: str,
                 batch_size: int = 32) -> torch.Tensor:
    """θ(S) per dataset and layer, averaged over its dummy queries: ``[n_datasets, n_layers, hidden]``."""
    prompts = task_vector_prompts(datasets, prompt_format, separator)
    states = last_token_states(model, tokenizer, encode(tokenizer, prompts), batch_size)
    per = len(datasets[0]["dummies"]) if datasets else 1
    return states.reshape(len(datasets), per, *states.shape[1:]).mean(1)


def _check_vectors(vectors: torch.Tensor, n: int, layers: Sequence[int]) -> None:
    if vectors.dim() != 3 or vectors.shape[0] != n or vectors.shape[1] != len(layers):
        raise ValueError(f"vectors must be [n_queries={n}, n_layers={len(layers)}, hidden], "
                         f"got {tuple(vectors.shape)}")


@torch.no_grad()
def patched_predictions(model: Any, seqs: Sequence[Sequence[int]], vectors: torch.Tensor, layers: Sequence[int],
                        mode: str = "replace", scale: float = 1.0, batch_size: int = 32,
                        use_cache: bool = True) -> torch.Tensor:
    """Greedy first token of each query with ``vectors[i, j]`` patched at ``layers[j]``, last position.

    Returns Long ``[len(layers), n]``. Queries of one token length form a
    batch (no padding); with ``use_cache`` the prefix (all but the last
    token) runs once per batch and each layer re-runs only the last token.
    """
    _check_vectors(vectors, len(seqs), layers)
    out = torch.empty(len(layers), len(seqs), dtype=torch.long)
    device = _device(model)
    for group in _length_groups(seqs, batch_size):
        ids = torch.tensor([list(seqs[i]) for i in group], dtype=torch.long, device=device)
        cache = None
        if use_cache and ids.shape[1] > 1:
            cache = model(input_ids=ids[:, :-1], use_cache=True).past_key_values
            if not callable(getattr(cache, "crop", None)):
                cache = None  # a model without a croppable cache: full forwards, still batched
        for j, layer in enumerate(layers):
            with patch(model, {layer: vectors[group, j]}, mode=mode, scale=scale, position=-1):
                if cache is not None:
                    logits = model(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True).logits
                    cache.crop(-1)  # drop the patched last token again
                else:
                    logits = model(input_ids=ids, use_cache=False).logits
            out[j, group] = logits[:, -1].argmax(-1).cpu()
    return out


@torch.no_grad()
def patched_predictions_naive(model: Any, seqs: Sequence[Sequence[int]], vectors: torch.Tensor,
                              layers: Sequence[int], mode: str = "replace", scale: float = 1.0) -> torch.Tensor:
    """Reference for :func:`patched_predictions`: one full forward per query and layer, unbatched."""
    _check_vectors(vectors, len(seqs), layers)
    out = torch.empty(len(layers), len(seqs), dtype=torch.long)
    device = _device(model)
    for j, layer in enumerate(layers):
        for i, s in enumerate(seqs):
            ids = torch.tensor([list(s)], dtype=torch.long, device=device)
            with patch(model, {layer: vectors[i, j]}, mode=mode, scale=scale, position=-1):
                out[j, i] = model(input_ids=ids, use_cache=False).logits[0, -1].argmax().cpu()
    return out


def decode_tokens(tokenizer: Any, ids: torch.Tensor) -> list[str]:
    return [tokenizer.decode([int(t)]) for t in ids.reshape(-1)]
