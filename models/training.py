"""A small, reusable CPU training routine for tiny example models.

The plugin issues make their example models (committed to the example
workspace, never retrained in CI) with these two functions, so every example
model is built the same reproducible way:

* :func:`train_tokenizer` trains a ``tokenizers`` tokenizer (byte-level BPE or
  word-level) with BOS/EOS/PAD/UNK set, wrapped as a
  ``PreTrainedTokenizerFast`` that ``AutoTokenizer`` loads back.
* :func:`train_tiny` builds ``AutoModelForCausalLM.from_config(config)``,
  trains it with a plain AdamW loop that is deterministic given the seed, and
  saves model (safetensors) + tokenizer + ``training_log.json`` atomically:
  everything is written to a temporary directory beside ``out_dir`` and
  renamed into place, so a killed run leaves no half-written model.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

import torch

from runner.atomic import atomic_path

log = logging.getLogger(__name__)

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"

__all__ = ["BOS", "EOS", "PAD", "UNK", "atomic_directory", "train_tiny", "train_tokenizer"]


# --------------------------------------------------------------------------- atomic directories


@contextmanager
def atomic_directory(out_dir: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """``with atomic_directory(out) as tmp:`` write into ``tmp``; on success it becomes ``out``.

    The project's one atomic writer (``runner.atomic.atomic_path``) in
    directory mode, plus a guard: an existing ``out`` is replaced only when
    ``overwrite`` is true. A killed writer's leftovers are removed next time.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    with atomic_path(out, directory=True) as tmp:
        yield tmp


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | os.PathLike[str] | None = None,
    kind: Literal["bpe", "wordlevel"] = "bpe",
    *,
    add_bos: bool = True,
    model_max_length: int = 2048,
    min_frequency: int = 1,
) -> Any:
    """Train a tokenizer on ``texts`` and return it as a ``PreTrainedTokenizerFast``.

    ``kind="bpe"`` is byte-level BPE (GPT-2 style: any text encodes, a leading
    space is part of the word's token — the case the scorer's boundary rule is
    about). ``kind="wordlevel"`` splits on whitespace and punctuation, handy for
    toy tasks where one word must be one token. With ``add_bos`` the tokenizer
    prepends BOS when encoding with special tokens, so the scorer and
    ``generate`` feed the model the BOS it was trained with. Saved to
    ``out_dir`` (atomically) when given.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = [BOS, EOS, PAD, UNK]
    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "wordlevel":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special, show_progress=False
        )
    else:
        raise ValueError(f"kind must be 'bpe' or 'wordlevel', not {kind!r}")
    tok.train_from_iterator(list(texts), trainer=trainer)
    if add_bos:
        bos_id = tok.token_to_id(BOS)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if out_dir is not None:
        with atomic_directory(out_dir, overwrite=True) as tmp:
            fast.save_pretrained(tmp)
    return fast


# --------------------------------------------------------------------------- model


def _to_sequences(data: Sequence[str] | Sequence[Sequence[int]] | torch.Tensor, tokenizer: Any) -> list[list[int]]:
    """Token id lists, one per example: texts are encoded as BOS + text + EOS."""
    if isinstance(data, torch.Tensor):
        data = data.tolist() if data.dim() == 2 else [data.tolist()]
    if isinstance(data, str):
        raise TypeError("pass a list of texts, not one string")
    seqs: list[list[int]] = []
    for item in data:
        if isinstance(item, str):
            if tokenizer is None:
                raise ValueError("texts need a tokenizer (train one with train_tokenizer)")
            ids = list(tokenizer(item, add_special_tokens=False)["input_ids"])
            bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
            seqs.append(([bos] if bos is not None else []) + ids + ([eos] if eos is not None else []))
        else:
            seqs.append([int(t) for t in item])
    if not seqs or not any(seqs):
        raise ValueError("no training data")
    return seqs


def _prepare_config(config: Any, tokenizer: Any, seq_len: int) -> Any:
    """A copy of ``config`` made consistent with the tokenizer and sequence length."""
    config = copy.deepcopy(config)
    if tokenizer is not None:
        if config.vocab_size < len(tokenizer):
            raise ValueError(f"config.vocab_size={config.vocab_size} < tokenizer size {len(tokenizer)}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(tokenizer, name, None)
            if value is not None:
                setattr(config, name, value)
    limit = _max_positions(config)
    if limit is not None and limit < seq_len:
        raise ValueError(f"the config allows {limit} positions < seq_len={seq_len}")
    return config


def _max_positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def train_tiny(
    config: Any,
    data: Sequence[str] | Sequence[Sequence[int]] | torch.Tensor,
    steps: int,
    seed: int,
    out_dir: str | os.PathLike[str],
    tokenizer: Any = None,
    *,
    lr: float = 3e-3,
    batch_size: int = 8,
    seq_len: int | None = None,
    pack: bool = True,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    grad_clip: float | None = 1.0,
    num_threads: int | None = None,
    log_every: int = 10,
    overwrite: bool = False,
    forward_kwargs: Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None = None,
    checkpoints: Mapping[int, str] | None = None,
) -> Path:
    """Train ``AutoModelForCausalLM.from_config(config)`` on ``data`` and save it to ``out_dir``.

    ``data`` is texts (encoded with ``tokenizer`` as BOS + text + EOS) or token
    id sequences. With ``pack`` (default) the examples are concatenated into
    one stream and each step samples ``batch_size`` random windows of
    ``seq_len`` tokens (default: 64, or fewer if the config allows fewer) — good for language-like data. With ``pack=False`` each
    step samples whole examples, right-padded with loss masked on padding —
    good for task-shaped examples whose start (BOS, prompt) matters.

    Deterministic given ``seed`` on one machine: the seed sets the weight
    initialisation and the sampling order. ``num_threads`` sets torch's thread
    count for the run (restored afterwards); ``None`` keeps the current one.
    AdamW with linear warmup then cosine decay to 10% of ``lr``. Writes
    ``training_log.json`` (loss every ``log_every`` steps, seed, wall time)
    beside the weights and returns ``out_dir``.

    The loss is next-token cross-entropy computed here from the logits (not
    the model's ``labels`` argument), so models with another label convention
    (Huginn's published pre-shifted labels) train the same way.
    ``checkpoints`` maps a step count to a sub-directory of ``out_dir``
    (``{500: "revisions/step500"}``): the weights after that many steps are
    saved there too, with the tokenizer and their own ``training_log.json`` —
    intermediate training checkpoints, like OLMo's step revisions. They are
    written in the same atomic rename as the final model.
    ``forward_kwargs`` go to every training forward: a mapping, or a function
    of the step returning one (e.g. ``lambda step: {"num_steps": ...}`` to
    vary Huginn's recurrence; draw from your own seeded RNG to stay
    reproducible).
    """
    from transformers import AutoModelForCausalLM

    if steps < 1:
        raise ValueError("steps must be >= 1")
    checkpoints = dict(checkpoints or {})
    bad = [s for s in checkpoints if not 1 <= s < steps]
    if bad:
        raise ValueError(f"checkpoint steps {bad} are not between 1 and steps - 1 = {steps - 1}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    seqs = _to_sequences(data, tokenizer)
    if seq_len is None:
        seq_len = min(64, _max_positions(config) or 64)
    config = _prepare_config(config, tokenizer, seq_len)
    pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    pad_id = pad_id if pad_id is not None else 0

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.train()
        gen = torch.Generator().manual_seed(seed)
        if pack:
            stream = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
            while stream.numel() < seq_len + 1:  # windows of seq_len plus room to move
                stream = torch.cat([stream, stream])
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.dim() < 2 or "norm" in name.lower() else decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
        )

        def lr_at(step: int) -> float:
            if step < warmup_steps:
                return lr * (step + 1) / warmup_steps
            progress = (step - warmup_steps) / max(1, steps - warmup_steps)
            return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

        losses: list[tuple[int, float]] = []
        snapshots: dict[int, tuple[dict[str, torch.Tensor], int]] = {}
        tokens_seen = 0
        start = time.perf_counter()
        for step in range(steps):
            if pack:
                offs = torch.randint(0, stream.numel() - seq_len, (batch_size,), generator=gen)
                batch = torch.stack([stream[o : o + seq_len] for o in offs.tolist()])
                input_ids, labels = batch, batch.clone()
                attention_mask = torch.ones_like(input_ids)
            else:
                picks = torch.randint(0, len(seqs), (batch_size,), generator=gen).tolist()
                rows = [seqs[i][:seq_len] for i in picks]
                width = max(len(r) for r in rows)
                input_ids = torch.full((batch_size, width), pad_id, dtype=torch.long)
                attention_mask = torch.zeros_like(input_ids)
                for i, r in enumerate(rows):
                    input_ids[i, : len(r)] = torch.tensor(r)
                    attention_mask[i, : len(r)] = 1
                labels = input_ids.masked_fill(attention_mask == 0, -100)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            step_kwargs = forward_kwargs(step) if callable(forward_kwargs) else (forward_kwargs or {})
            extra = {"use_cache": False, **step_kwargs}
            output = model(input_ids=input_ids, attention_mask=attention_mask, **extra)
            logits = output.logits if hasattr(output, "logits") else output[0]
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            tokens_seen += int(attention_mask.sum())
            if step + 1 in checkpoints:
                snapshots[step + 1] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, tokens_seen)
            if step % log_every == 0 or step == steps - 1:
                losses.append((step, loss.item()))
                log.info("step %d/%d loss %.4f", step + 1, steps, losses[-1][1])
        seconds = time.perf_counter() - start
        model.eval()
        with atomic_directory(out, overwrite=overwrite) as tmp:
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            record = {
                "seed": seed,
                "steps": steps,
                "tokens_seen": tokens_seen,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_steps": warmup_steps,
                "batch_size": batch_size,
                "seq_len": seq_len,
                "pack": pack,
                "n_examples": len(seqs),
                "num_threads": torch.get_num_threads(),
                "seconds": round(seconds, 3),
                "losses": [{"step": s, "loss": v} for s, v in losses],
            }
            (tmp / "training_log.json").write_text(json.dumps(record, indent=2) + "\n")
            for at, (state, seen) in snapshots.items():
                folder = tmp / checkpoints[at]
                folder.mkdir(parents=True)
                model.save_pretrained(folder, state_dict=state)
                if tokenizer is not None:
                    tokenizer.save_pretrained(folder)
                partial = {**record, "steps": at, "tokens_seen": seen, "final_steps": steps,
                           "losses": [{"step": s, "loss": v} for s, v in losses if s < at]}
                (folder / "training_log.json").write_text(json.dumps(partial, indent=2) + "\n")
    finally:
        torch.set_num_threads(old_threads)
    return out
