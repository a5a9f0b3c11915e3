"""The local transformers backend: exact label log-odds, with prefix key/value reuse.

The scored token sequence of a target is assembled from pieces, each
tokenised on its own: the start token (BOS when the tokenizer adds one),
every demonstration ``{prompt}{word}\\n\\n`` in the order of
:mod:`plugins.icm_label.contexts`, then the target's prompt split from the
label word by :func:`models.scoring.encode_pair` (so the boundary rule is
the project's one scorer's). With ``prefix_reuse`` the leave-one-out
contexts of a batch are walked as the binary tree they form: each level's
demonstrations are run through the model once on top of the key/value
cache of the levels above, shared by every target below it, and the cache
is cut back afterwards. Each level's key/values are also kept, keyed by
everything in front of them and their own tokens, in an LRU store bounded
by ``prefix_cache_tokens``, so later energy evaluations — most of whose
context did not change — and label predictions skip them. Without
``prefix_reuse`` every context is encoded from scratch (the naive
baseline of benchmarks/icm_prefix_reuse.py). Both see exactly the same
tokens; ``stats["token_forwards"]`` counts the tokens run through the model.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import OrderedDict
from typing import Any, Sequence

import torch

from models.scoring import encode_pair, model_max_length, sequence_start
from plugins.icm_label.backends import Backend, BackendError, finite
from plugins.icm_label.contexts import SEPARATOR, context_slots, demonstration
from plugins.icm_label.testbeds import Claim, Testbed


class LocalBackend(Backend):
    """Scores with a transformers causal LM (any architecture with a croppable ``DynamicCache``)."""

    name = "local"

    def __init__(self, model: Any, tokenizer: Any, testbed: Testbed, *, prefix_reuse: bool = True,
                 prefix_cache_tokens: int = 200_000, separator: str = SEPARATOR) -> None:
        super().__init__(testbed, separator)
        self.model, self.tokenizer = model, tokenizer
        self.prefix_reuse = prefix_reuse
        self.cache_budget = max(0, int(prefix_cache_tokens))
        self.start = sequence_start(tokenizer)
        self.limit = model_max_length(model)
        self.device = model.get_input_embeddings().weight.device
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.stats.update(token_forwards=0, forwards=0, cached_blocks_used=0)
        self._demo_ids: dict[tuple[str, int], list[int]] = {}
        self._target_ids: dict[str, list[tuple[list[int], list[int]]]] = {}
        # key -> (per-layer key/value slices of one block, its token count), least recently used first
        self._store: OrderedDict[str, tuple[list[tuple[torch.Tensor, torch.Tensor]], int]] = OrderedDict()
        self._stored_tokens = 0

    @classmethod
    def from_params(cls, params: dict[str, Any], testbed: Testbed, workspace: Any, logger: Any = None) -> "LocalBackend":
        from models.loading import load_model

        dtype = params.get("dtype", "float32")
        model, tokenizer = load_model(params["model"], workspace, device_map=params.get("device_map", "cpu"),
                                      dtype="float32" if dtype == "float64" else dtype)
        if dtype == "float64":
            model = model.to(torch.float64)
        return cls(model, tokenizer, testbed, prefix_reuse=params.get("prefix_reuse", True),
                   prefix_cache_tokens=params.get("prefix_cache_tokens", 200_000))

    # ------------------------------------------------------------------ token pieces

    def _demo(self, prompt: str, label: int) -> list[int]:
        key = (prompt, label)
        if key not in self._demo_ids:
            text = demonstration(prompt, label, self.testbed.true_word, self.testbed.false_word, self.separator)
            self._demo_ids[key] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._demo_ids[key]

    def _target(self, prompt: str) -> list[tuple[list[int], list[int]]]:
        """``(context ids, word ids)`` for the true word, then the false word."""
        if prompt not in self._target_ids:
            self._target_ids[prompt] = [encode_pair(self.tokenizer, prompt, word, add_bos=False)
                                        for word in (self.testbed.true_word, self.testbed.false_word)]
        return self._target_ids[prompt]

    # ------------------------------------------------------------------ model calls

    def _forward(self, ids: Sequence[int], cache: Any, keep: int = 1) -> torch.Tensor:
        """Run ``ids`` on top of ``cache`` (``None``: from scratch); float64 log-probs of the last ``keep``
        positions (the unembedding and softmax of the other positions are skipped when the model allows)."""
        if not ids:
            raise BackendError("empty forward")
        length = (cache.get_seq_length() if cache is not None else 0) + len(ids)
        if self.limit is not None and length > self.limit:
            raise BackendError(f"a context of {length} tokens exceeds the model's maximum length {self.limit}; "
                               "lower batch_size (claims per ICM batch) or num_shots")
        self.stats["token_forwards"] += len(ids)
        self.stats["forwards"] += 1
        inp = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        extra = {"logits_to_keep": keep} if self._keeps_logits else {}
        with torch.no_grad():
            if cache is None:
                out = self.model(input_ids=inp, use_cache=False, **extra)
            else:
                out = self.model(input_ids=inp, past_key_values=cache, use_cache=True, **extra)
        return torch.log_softmax(out.logits[0, -keep:].to(torch.float64), dim=-1)

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    @staticmethod
    def _cut(cache: Any, length: int) -> None:
        extra = cache.get_seq_length() - length
        if extra > 0:
            cache.crop(-extra)

    def _word_logprob(self, cache: Any, first: torch.Tensor, word_ids: list[int]) -> float:
        """log P(word) given the cache, ``first`` = log-probs after the last cached token."""
        total = float(first[word_ids[0]])
        if len(word_ids) > 1:
            length = cache.get_seq_length()
            rest = self._forward(word_ids[:-1], cache, keep=len(word_ids) - 1)
            total += float(sum(rest[j, word_ids[j + 1]] for j in range(len(word_ids) - 1)))
            self._cut(cache, length)
        return total

    def _leaf(self, cache: Any, prompt: str) -> float:
        """Score the target on top of ``cache`` (left as it was found)."""
        length = cache.get_seq_length()
        parts = self._target(prompt)
        if not all(ctx for ctx, _ in parts):
            raise BackendError(f"the prompt {prompt[-40:]!r} has no tokens before its label word")
        logps = []
        last_ctx: list[int] | None = None
        first = None
        for ctx, word in parts:  # the two words usually share the context tokens: one forward
            if ctx != last_ctx:
                self._cut(cache, length)
                first, last_ctx = self._forward(ctx, cache)[-1], ctx
            logps.append(self._word_logprob(cache, first, word))
        self._cut(cache, length)
        return finite(logps[0] - logps[1])

    def _naive(self, demo_ids: list[int], prompt: str) -> float:
        """The same target encoded from scratch (no cache)."""
        logps = []
        for ctx, word in self._target(prompt):
            ids = self.start + demo_ids + ctx + word[:-1]
            lp = self._forward(ids, None, keep=len(word))  # the positions that predict the word's tokens
            logps.append(float(sum(lp[j, word[j]] for j in range(len(word)))))
        return finite(logps[0] - logps[1])

    # ------------------------------------------------------------------ cached blocks

    def _extend(self, cache: Any, key: str, ids: list[int]) -> str:
        """Append a block to the cache (from the store when it is there); the key of the longer prefix."""
        new_key = hashlib.sha1(f"{key}|{ids}".encode()).hexdigest()
        stored = self._store.get(new_key)
        if stored is not None:
            self._store.move_to_end(new_key)
            layers, _ = stored
            for i, (k, v) in enumerate(layers):
                cache.update(k, v, i)
            self.stats["cached_blocks_used"] += 1
            return new_key
        before = cache.get_seq_length()
        self._forward(ids, cache)
        if self.cache_budget:
            layers = [(layer.keys[:, :, before:].clone(), layer.values[:, :, before:].clone())
                      for layer in cache.layers]
            self._store[new_key] = (layers, len(ids))
            self._stored_tokens += len(ids)
            while self._stored_tokens > self.cache_budget and self._store:
                _, (_, n) = self._store.popitem(last=False)
                self._stored_tokens -= n
        return new_key

    def _root(self) -> tuple[Any, str]:
        cache = self._new_cache()
        key = "root"
        if self.start:
            key = self._extend(cache, key, list(self.start))
        return cache, key

    # ------------------------------------------------------------------ backend API

    def loo(self, claims: Sequence[Claim], labels: Sequence[int | None], targets: Sequence[int]) -> list[float]:
        prompts = self.prompts(claims)
        self.stats["queries"] += len(targets)
        if not self.prefix_reuse:
            out = []
            for t in targets:
                demo_ids = [i for s in context_slots(labels, t) for i in self._demo(prompts[s], labels[s])]  # type: ignore[arg-type]
                out.append(self._naive(demo_ids, prompts[t]))
            return out
        results: dict[int, float] = {}
        cache, key = self._root()
        with torch.no_grad():
            self._visit(cache, key, 0, len(claims), sorted(set(targets)), prompts, labels, results)
        return [results[t] for t in targets]

    def _visit(self, cache: Any, key: str, lo: int, hi: int, targets: list[int], prompts: list[str],
               labels: Sequence[int | None], results: dict[int, float]) -> None:
        if hi - lo == 1:
            results[lo] = self._leaf(cache, prompts[lo])
            return
        mid = (lo + hi) // 2
        for (clo, chi), (blo, bhi) in (((lo, mid), (mid, hi)), ((mid, hi), (lo, mid))):
            inside = [t for t in targets if clo <= t < chi]
            if not inside:
                continue
            ids = [i for s in range(blo, bhi) if labels[s] is not None for i in self._demo(prompts[s], labels[s])]  # type: ignore[arg-type]
            length = cache.get_seq_length()
            child_key = self._extend(cache, key, ids) if ids else key
            self._visit(cache, child_key, clo, chi, inside, prompts, labels, results)
            self._cut(cache, length)

    def few_shot(self, demos: Sequence[Claim], demo_labels: Sequence[int], targets: Sequence[Claim]) -> list[float]:
        demo_ids = [i for p, y in zip(self.prompts(demos), demo_labels) for i in self._demo(p, y)]
        self.stats["queries"] += len(targets)
        if not self.prefix_reuse:
            return [self._naive(demo_ids, p) for p in self.prompts(targets)]
        cache, key = self._root()
        with torch.no_grad():
            if demo_ids:
                key = self._extend(cache, key, demo_ids)
            return [self._leaf(cache, p) for p in self.prompts(targets)]

    def close(self) -> None:
        self._store.clear()
        self.model = None
