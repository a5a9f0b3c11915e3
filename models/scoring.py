"""Log-probabilities of continuations: the one scorer every plugin uses.

Task vectors, ICM, the task-demand experiments and every accuracy evaluation
score text through this module, so a tokenisation or padding choice made here
is made once for all of them.

Choices (documented because they change numbers):

* **Boundary.** ``context + continuation`` is tokenised as one string, the
  way the model saw text in training. The continuation's tokens are the tokens
  that contain at least one character of the continuation (found from the fast
  tokenizer's offsets). A trailing space of the context therefore moves into
  the continuation's first token (``"Answer: " + "Paris"`` scores
  ``" Paris"``), and a token straddling the boundary belongs to the
  continuation (``"The cap" + "ital"`` scores ``" capital"`` given
  ``"The"``) — never an empty continuation. ``split="lm_eval"`` reproduces
  lm-evaluation-harness instead: trailing whitespace of the context is moved
  to the continuation, both are encoded, and the whole is split at the
  context's token length. The two agree whenever the context's tokens are a
  prefix of the whole's tokens (the usual case). Slow tokenizers, which have
  no offsets, always use ``"lm_eval"``.
* **BOS.** Text is encoded without special tokens and a BOS is prepended when
  the tokenizer itself would add one (Llama, Gemma, our trained tokenizers),
  or when the context is empty (the first continuation token needs something
  to condition on; GPT-2's ``<|endoftext|>`` serves, as in lm-eval). An empty
  context with no BOS/EOS token is an error. ``add_bos`` overrides.
* **Padding.** Right padding by default: real tokens never attend to pads
  under the causal mask and positions start at 0 without help, so it works
  for any architecture (lm-eval right-pads too). ``padding_side="left"`` is
  supported and passes ``position_ids`` computed from the attention mask.
  Both give the same numbers within float tolerance.
* **Truncation.** A sequence longer than the model's maximum length loses
  tokens from the left (the context's start, BOS included); a continuation
  that alone does not fit is an error.
* Requests are sorted by length so batches pad little; results come back in
  input order. Forward passes run under ``torch.no_grad`` in eval mode (the
  model's training flag is restored); log-softmax is taken in float32.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import torch

Reduction = Literal["sum", "mean", "none"]
Split = Literal["offsets", "lm_eval"]
PaddingSide = Literal["right", "left"]

__all__ = [
    "ContinuationScore",
    "Generation",
    "NextTokenBatch",
    "encode_contexts",
    "encode_pair",
    "generate_greedy",
    "model_max_length",
    "next_token_batches",
    "next_token_logprobs",
    "score_choices",
    "score_choices_batched",
    "score_choices_detailed",
    "score_continuations",
    "score_continuations_detailed",
]


@dataclass(frozen=True)
class ContinuationScore:
    """Everything one scored continuation yields (lm-eval's ``(logprob, is_greedy)`` and more)."""

    token_logprobs: list[float]
    token_ids: list[int]
    is_greedy: bool  # every continuation token is the argmax of its position
    truncated: bool  # tokens were dropped from the left to fit the model

    @property
    def sum(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def mean(self) -> float:
        return self.sum / len(self.token_logprobs)

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)


# --------------------------------------------------------------------------- tokenisation


def _tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer prepends BOS on its own, i.e. the model was trained with one."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def _prefix_token(tokenizer: Any) -> int | None:
    """The token that starts a sequence with no context: BOS, else EOS (GPT-2 style)."""
    for name in ("bos_token_id", "eos_token_id"):
        tok = getattr(tokenizer, name, None)
        if tok is not None:
            return int(tok)
    return None


def sequence_start(tokenizer: Any, add_bos: bool | None = None) -> list[int]:
    """The token ids a scored sequence starts with: ``[BOS]`` when the tokenizer adds one, else ``[]``.

    For callers that assemble token sequences piece by piece (prefix KV-cache
    reuse) and must start them exactly as :func:`encode_pair` does.
    """
    want = _tokenizer_adds_bos(tokenizer) if add_bos is None else add_bos
    if not want:
        return []
    prefix = _prefix_token(tokenizer)
    if prefix is None:
        raise ValueError("add_bos=True but the tokenizer has no BOS token")
    return [prefix]


def _encode_offsets(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    whole = tokenizer(context + continuation, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = whole["input_ids"], whole["offset_mapping"]
    cut = len(context)
    split_at = len(ids)
    for i, (_, end) in enumerate(offsets):
        if end > cut:
            split_at = i
            break
    return list(ids[:split_at]), list(ids[split_at:])


def _encode_lm_eval(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    return list(whole[: len(ctx)]), list(whole[len(ctx) :])


def encode_pair(
    tokenizer: Any,
    context: str,
    continuation: str,
    *,
    add_bos: bool | None = None,
    split: Split = "offsets",
) -> tuple[list[int], list[int]]:
    """Token ids of ``(context, continuation)`` as the scorer sees them, BOS included in the context.

    Exposed so plugins (and tests) can see exactly which tokens are scored.
    """
    if not continuation:
        raise ValueError("empty continuation: there is nothing to score")
    if split == "offsets" and getattr(tokenizer, "is_fast", False):
        ctx, cont = _encode_offsets(tokenizer, context, continuation)
    elif split in ("offsets", "lm_eval"):
        ctx, cont = _encode_lm_eval(tokenizer, context, continuation)
    else:
        raise ValueError(f"split must be 'offsets' or 'lm_eval', not {split!r}")
    if not cont:
        raise ValueError(f"continuation {continuation!r} produced no tokens after context {context[-40:]!r}")
    want_bos = _tokenizer_adds_bos(tokenizer) if add_bos is None else add_bos
    if want_bos or not ctx:
        prefix = _prefix_token(tokenizer)
        if prefix is None:
            if not ctx:
                raise ValueError(
                    "empty context and the tokenizer has no BOS or EOS token to condition the first "
                    "continuation token on; pass a non-empty context"
                )
            raise ValueError("add_bos=True but the tokenizer has no BOS token")
        ctx = [prefix] + ctx
    return ctx, cont


# --------------------------------------------------------------------------- model helpers


def model_max_length(model: Any) -> int | None:
    """Longest input the model's config allows (``None`` when it does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "max_sequence_length", "block_size"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _input_device(model: Any) -> torch.device:
    """Where the inputs go: the embedding's device (right for accelerate device maps too)."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device


def _accepts(model: Any, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _pad_batch(
    rows: Sequence[Sequence[int]], pad_id: int, side: PaddingSide, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Pad rows into ``input_ids``/``attention_mask``; also return each row's offset into the batch."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    starts = []
    for i, row in enumerate(rows):
        start = width - len(row) if side == "left" else 0
        ids[i, start : start + len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, start : start + len(row)] = 1
        starts.append(start)
    return ids.to(device), mask.to(device), starts


def _forward_logits(
    model: Any,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    side: PaddingSide,
    forward_kwargs: dict[str, Any],
) -> tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
    """``(logits, row offsets, input_ids, attention_mask)`` of one padded batch."""
    device = _input_device(model)
    ids, mask, starts = _pad_batch(rows, pad_id, side, device)
    kwargs = dict(forward_kwargs)
    if _accepts(model, "attention_mask"):
        kwargs.setdefault("attention_mask", mask)
    elif side == "left":
        raise TypeError(f"{type(model).__name__}.forward takes no attention_mask; use padding_side='right'")
    # Right padding needs no mask for correctness (pads follow every real token); it is passed when
    # accepted so hooks can find the last real token from it.
    if side == "left":
        if not _accepts(model, "position_ids"):
            raise TypeError(
                f"{type(model).__name__}.forward takes no position_ids, so left padding would shift "
                "positions; use padding_side='right'"
            )
        kwargs.setdefault("position_ids", (mask.cumsum(-1) - 1).clamp(min=0))
    kwargs.setdefault("use_cache", False)
    if not _accepts(model, "use_cache"):
        kwargs.pop("use_cache")
    out = model(input_ids=ids, **kwargs)
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits, starts, ids, mask


class _EvalMode:
    """Eval mode + no grad (or grad, for gradient passes) for the duration; restores the training flag."""

    def __init__(self, model: Any, grad: bool = False) -> None:
        self.model = model
        self.grad = grad

    def __enter__(self) -> None:
        self.was_training = bool(getattr(self.model, "training", False))
        self.no_grad = torch.enable_grad() if self.grad else torch.no_grad()
        self.no_grad.__enter__()
        if self.was_training:
            self.model.eval()

    def __exit__(self, *exc: object) -> None:
        if self.was_training:
            self.model.train()
        self.no_grad.__exit__(*exc)


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id"):
        tok = getattr(tokenizer, name, None)
        if tok is not None:
            return int(tok)
    return 0  # any id works: padded positions are masked and never read


def _check_padding_side(side: str) -> None:
    if side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', not {side!r}")


# --------------------------------------------------------------------------- scoring


def score_continuations_detailed(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    continuations: Sequence[str],
    *,
    batch_size: int = 8,
    add_bos: bool | None = None,
    split: Split = "offsets",
    padding_side: PaddingSide = "right",
    max_length: int | None = None,
    **forward_kwargs: Any,
) -> list[ContinuationScore]:
    """Score ``log p(continuation | context)`` per token for each pair, batched.

    ``forward_kwargs`` go to every forward call unchanged (e.g. Huginn's
    ``num_steps``). See the module docstring for boundary, BOS, padding and
    truncation rules.
    """
    if isinstance(contexts, str) or isinstance(continuations, str):
        raise TypeError("contexts and continuations are sequences of strings, not strings")
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    _check_padding_side(padding_side)
    limit = max_length if max_length is not None else model_max_length(model)
    if add_bos is None:
        add_bos = _tokenizer_adds_bos(tokenizer)  # once, not per request

    # (input ids, target ids, truncated). Input position j predicts token j + 1 of ctx + cont, so
    # the continuation is predicted by the last len(cont) input positions.
    requests = []
    for ctx_text, cont_text in zip(contexts, continuations):
        ctx, cont = encode_pair(tokenizer, ctx_text, cont_text, add_bos=add_bos, split=split)
        full = ctx + cont
        inp = full[:-1]
        truncated = False
        if limit is not None and len(inp) > limit:
            if len(cont) > limit:
                raise ValueError(
                    f"continuation of {len(cont)} tokens does not fit the model's maximum length {limit}"
                )
            inp = inp[len(inp) - limit :]
            truncated = True
        requests.append((inp, cont, truncated))

    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
    results: list[ContinuationScore | None] = [None] * len(requests)
    pad_id = _pad_id(tokenizer)
    with _EvalMode(model):
        for b in range(0, len(order), batch_size):
            chunk = order[b : b + batch_size]
            logits, starts, _, _ = _forward_logits(
                model, [requests[i][0] for i in chunk], pad_id, padding_side, forward_kwargs
            )
            # Gather only the positions that predict continuation tokens, then log-softmax those.
            rows, cols, targets, lengths = [], [], [], []
            for r, i in enumerate(chunk):
                inp, cont, _ = requests[i]
                pos = starts[r] + len(inp) - len(cont)
                rows += [r] * len(cont)
                cols += range(pos, pos + len(cont))
                targets += cont
                lengths.append(len(cont))
            picked = logits[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)]
            logprobs = torch.log_softmax(picked.float(), dim=-1)
            tgt = torch.tensor(targets, device=logprobs.device)
            token_lp = logprobs.gather(-1, tgt[:, None])[:, 0].cpu()
            greedy = (logprobs.argmax(-1) == tgt).cpu()
            offset = 0
            for r, i in enumerate(chunk):
                n = lengths[r]
                results[i] = ContinuationScore(
                    token_logprobs=token_lp[offset : offset + n].tolist(),
                    token_ids=list(requests[i][1]),
                    is_greedy=bool(greedy[offset : offset + n].all()),
                    truncated=requests[i][2],
                )
                offset += n
    return results  # type: ignore[return-value]


def score_continuations(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    continuations: Sequence[str],
    reduction: Reduction = "sum",
    batch_size: int = 8,
    **kwargs: Any,
) -> list[float] | list[list[float]]:
    """``log p(continuation | context)`` for each pair: summed, averaged per token, or per token.

    ``reduction="none"`` returns one list of per-token log-probs per pair.
    Other keyword arguments as in :func:`score_continuations_detailed`.
    """
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"reduction must be 'sum', 'mean' or 'none', not {reduction!r}")
    scores = score_continuations_detailed(model, tokenizer, contexts, continuations, batch_size=batch_size, **kwargs)
    if reduction == "sum":
        return [s.sum for s in scores]
    if reduction == "mean":
        return [s.mean for s in scores]
    return [s.token_logprobs for s in scores]


def score_choices(
    model: Any,
    tokenizer: Any,
    context: str,
    options: Sequence[str],
    reduction: Reduction = "sum",
    batch_size: int = 8,
    **kwargs: Any,
) -> list[float]:
    """Log-likelihood of each option after one context (multiple choice); argmax is the answer."""
    if reduction == "none":
        raise ValueError("score_choices needs a scalar per option: use 'sum' or 'mean'")
    return score_continuations(  # type: ignore[return-value]
        model, tokenizer, [context] * len(options), list(options), reduction, batch_size, **kwargs
    )


def score_choices_batched(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    options: Sequence[Sequence[str]],
    reduction: Reduction = "sum",
    batch_size: int = 8,
    **kwargs: Any,
) -> list[list[float]]:
    """:func:`score_choices` for many questions at once, batched across questions."""
    if reduction == "none":
        raise ValueError("score_choices_batched needs a scalar per option: use 'sum' or 'mean'")
    detailed = score_choices_detailed(model, tokenizer, contexts, options, batch_size=batch_size, **kwargs)
    if reduction == "sum":
        return [[s.sum for s in row] for row in detailed]
    if reduction == "mean":
        return [[s.mean for s in row] for row in detailed]
    raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}")


def score_choices_detailed(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    options: Sequence[Sequence[str]],
    batch_size: int = 8,
    **kwargs: Any,
) -> list[list[ContinuationScore]]:
    """Per-token scores of every option of every question, batched across questions.

    One forward per option gives both the summed and the length-normalised
    score (``.sum``, ``.mean``) and the token count, so a plugin reporting
    both variants scores once.
    """
    if len(contexts) != len(options):
        raise ValueError(f"{len(contexts)} contexts but {len(options)} option lists")
    flat_ctx = [c for c, opts in zip(contexts, options) for _ in opts]
    flat_opt = [o for opts in options for o in opts]
    flat = score_continuations_detailed(model, tokenizer, flat_ctx, flat_opt, batch_size=batch_size, **kwargs)
    out, k = [], 0
    for opts in options:
        out.append(list(flat[k : k + len(opts)]))
        k += len(opts)
    return out


def encode_contexts(
    tokenizer: Any, contexts: Sequence[str], *, add_bos: bool | None = None, max_length: int | None = None
) -> list[list[int]]:
    """Token ids of each context as the next-token scorer feeds them (BOS rule, left truncation)."""
    if isinstance(contexts, str):
        raise TypeError("contexts is a sequence of strings, not a string")
    want_bos = _tokenizer_adds_bos(tokenizer) if add_bos is None else add_bos
    encoded = []
    for text in contexts:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
        if want_bos or not ids:
            prefix = _prefix_token(tokenizer)
            if prefix is None:
                raise ValueError("empty context and the tokenizer has no BOS or EOS token")
            ids = [prefix] + ids
        if max_length is not None and len(ids) > max_length:
            ids = ids[len(ids) - max_length :]
        encoded.append(ids)
    return encoded


@dataclass
class NextTokenBatch:
    """One forward of :func:`next_token_batches`: which contexts, and the logits that predict their next token."""

    indices: list[int]  # positions in the ``contexts`` given
    logits: torch.Tensor  # [len(indices), vocab] at each row's last real token (graph attached when grad=True)
    input_ids: torch.Tensor  # [len(indices), width], padded, on the model's input device
    attention_mask: torch.Tensor  # [len(indices), width], 1 on real tokens


def next_token_batches(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    *,
    batch_size: int = 8,
    add_bos: bool | None = None,
    padding_side: PaddingSide = "right",
    max_length: int | None = None,
    grad: bool = False,
    **forward_kwargs: Any,
) -> Iterator[NextTokenBatch]:
    """The forwards behind :func:`next_token_logprobs`, one batch at a time (longest contexts first).

    ``grad=True`` runs them with gradients enabled (still in eval mode), so a
    caller can backpropagate from the yielded logits before the next batch,
    e.g. inside :func:`models.capture.capture_grads`; same batches, same order.
    """
    _check_padding_side(padding_side)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    limit = max_length if max_length is not None else model_max_length(model)
    encoded = encode_contexts(tokenizer, contexts, add_bos=add_bos, max_length=limit)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad_id = _pad_id(tokenizer)
    with _EvalMode(model, grad=grad):
        for b in range(0, len(order), batch_size):
            chunk = order[b : b + batch_size]
            rows = [encoded[i] for i in chunk]
            logits, starts, ids, mask = _forward_logits(model, rows, pad_id, padding_side, forward_kwargs)
            last = torch.tensor([s + len(r) - 1 for s, r in zip(starts, rows)], device=logits.device)
            picked = logits[torch.arange(len(rows), device=logits.device), last]
            yield NextTokenBatch(list(chunk), picked, ids, mask)


def next_token_logprobs(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    *,
    batch_size: int = 8,
    add_bos: bool | None = None,
    padding_side: PaddingSide = "right",
    max_length: int | None = None,
    **forward_kwargs: Any,
) -> torch.Tensor:
    """Log-probabilities of the next token after each context: float32 ``[len(contexts), vocab]`` on CPU.

    An empty context gets BOS (or EOS) as in :func:`score_continuations`;
    long contexts are truncated from the left.
    """
    if isinstance(contexts, str):
        raise TypeError("contexts is a sequence of strings, not a string")
    out: torch.Tensor | None = None
    for batch in next_token_batches(model, tokenizer, contexts, batch_size=batch_size, add_bos=add_bos,
                                    padding_side=padding_side, max_length=max_length, **forward_kwargs):
        lp = torch.log_softmax(batch.logits.float(), dim=-1).cpu()
        if out is None:
            out = torch.empty((len(contexts), lp.shape[-1]), dtype=torch.float32)
        out[torch.tensor(batch.indices)] = lp
    if out is None:
        return torch.empty((0, 0), dtype=torch.float32)
    return out


@dataclass(frozen=True)
class Generation:
    """One greedy continuation: its text, token ids and the log-prob of each generated token."""

    text: str
    token_ids: list[int]
    token_logprobs: list[float]

    @property
    def sum_logprob(self) -> float:
        return float(sum(self.token_logprobs))


def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    batch_size: int = 8,
    add_bos: bool | None = None,
    stop: str | None = None,
    **generate_kwargs: Any,
) -> list[Generation]:
    """Greedy continuations of ``prompts`` (new tokens only, special tokens skipped in the text).

    Prompts are encoded as the scorer encodes contexts (no special tokens, BOS
    when the tokenizer adds one) and left-padded with an attention mask, so a
    batch gives what each prompt alone gives. Generation stops at EOS; with
    ``stop`` the text is also cut after the first occurrence of ``stop``
    (its tokens and log-probs are cut at the token that completes it).
    ``token_logprobs`` are the log-softmax of the raw logits at each step,
    i.e. the probability the model gave the token it produced.
    """
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    encoded = encode_contexts(tokenizer, prompts, add_bos=add_bos)
    pad_id = _pad_id(tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    device = _input_device(model)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list[Generation | None] = [None] * len(encoded)
    with _EvalMode(model):
        for b in range(0, len(order), batch_size):
            chunk = order[b : b + batch_size]
            ids, mask, _ = _pad_batch([encoded[i] for i in chunk], pad_id, "left", device)
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                num_beams=1, pad_token_id=pad_id, eos_token_id=eos, output_logits=True,
                return_dict_in_generate=True, **generate_kwargs,
            )
            new = out.sequences[:, ids.shape[1]:].cpu()
            steps = torch.stack([torch.log_softmax(l.float(), dim=-1) for l in out.logits], dim=1).cpu()
            for r, i in enumerate(chunk):
                tokens, lps = [], []
                for t in range(new.shape[1]):
                    tok = int(new[r, t])
                    tokens.append(tok)
                    lps.append(float(steps[r, t, tok]))
                    if eos is not None and tok == eos:
                        break
                    if stop and stop in tokenizer.decode(tokens, skip_special_tokens=True):
                        break
                text = tokenizer.decode(tokens, skip_special_tokens=True)
                if stop and stop in text:
                    text = text[: text.index(stop) + len(stop)]
                results[i] = Generation(text=text, token_ids=tokens, token_logprobs=lps)
    return results  # type: ignore[return-value]
