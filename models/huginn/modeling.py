"""Clean-room implementation of the recurrent-depth Huginn-0125 ("raven") model.

Architecture (arXiv 2502.05171): token embedding scaled by sqrt(n_embd) ->
prelude blocks -> a random initial latent state that is refined ``num_steps``
times by the core blocks, each step first mixing the state with the prelude
output through ``adapter`` (Linear over their concatenation, 2E -> E) ->
``ln_f`` -> coda blocks -> ``ln_f`` again -> tied ``lm_head``.

Every block is a "sandwich": ``x = norm_2(attn(norm_1(x)) + x)`` then
``x = norm_4(mlp(norm_3(x)) + x)``. Module names equal the published ones, so
published safetensors load without renaming.

Interpretability additions (the reason this file exists):

* Every block call is a *visit* with a flat index in visiting order (prelude,
  core blocks step-major, coda); before each call the model sets
  ``current_layer_index`` and ``current_visit`` so hooks on a shared core
  block can act at exactly one (block, step).
* ``output_hidden_states=True`` returns ``(embed, layer 0, ..., layer N-1)``
  with raw block outputs (no final norm).
* ``attention_mask`` is honoured (padding keys are masked, positions of
  left-padded rows start at their first real token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as hf_init
from transformers.cache_utils import Cache, DynamicCache
from transformers.utils import ModelOutput

from .configuration import HuginnConfig
from .numbering import HuginnNumbering


# --------------------------------------------------------------------------- cache


class HuginnCache(DynamicCache):
    """A dynamic KV cache with one entry per block *visit*.

    A core block visited at 32 steps needs 32 separate key/value histories,
    so the cache is indexed by visit, not by module. Entry order: prelude
    blocks, then coda blocks, then core visits step-major. Coda entries sit
    before the core ones so their slots do not depend on ``num_steps``.
    Keep ``num_steps`` fixed while a cache is reused: a visit with no history
    while other entries have one is an error instead of silent garbage.
    """

    def __init__(self) -> None:
        super().__init__()  # no config: layers are created lazily on first use

    def update(  # type: ignore[override]
        self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        if layer_idx != 0:
            expected = self.get_seq_length(0) - key_states.shape[-2]
            have = self.get_seq_length(layer_idx)
            if have != expected:
                raise ValueError(
                    f"HuginnCache entry {layer_idx} holds {have} positions but {expected} were expected; "
                    "keep num_steps constant while reusing a cache"
                )
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)


# --------------------------------------------------------------------------- building blocks


class RMSNorm(nn.Module):
    """RMS norm computed in float32, then cast back and scaled (as published)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_angles(positions: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos/sin of the rotary angles, float32, shaped [B, S, 1, head_dim // 2].

    Computed from the positions on the fly (instead of a stored table) so
    per-row positions of padded batches need no gather.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.to(torch.float32)[..., None] * inv_freq
    angles = angles[:, :, None, :]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent feature pairs (2i, 2i+1) — the published pairing, not the half-split one."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1)
    return rotated.flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with a fused QKV projection and learned q/k biases."""

    def __init__(self, config: HuginnConfig) -> None:
        super().__init__()
        self.n_head = config.n_heads
        self.head_dim = config.n_embd // config.n_heads
        self.n_embd = config.n_embd
        self.Wqkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.qk_bias: nn.Parameter | None = None
        if config.qk_bias:
            self.qk_bias = nn.Parameter(torch.zeros(2, 1, self.n_head, self.head_dim))
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None = None,
        cache: Cache | None = None,
        cache_index: int = 0,
    ) -> Tensor:
        batch, seq, _ = x.shape
        q, k, v = self.Wqkv(x).split(self.n_embd, dim=-1)
        q = q.view(batch, seq, self.n_head, self.head_dim)
        k = k.view(batch, seq, self.n_head, self.head_dim)
        v = v.view(batch, seq, self.n_head, self.head_dim)
        if self.qk_bias is not None:
            q = (q + self.qk_bias[0]).to(x.dtype)
            k = (k + self.qk_bias[1]).to(x.dtype)
        q = apply_rope(q, cos, sin).transpose(1, 2)
        k = apply_rope(k, cos, sin).transpose(1, 2)
        v = v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, cache_index)
        if mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.device))
        else:
            # No padding: plain causal attention (one query over its whole past needs no mask).
            y = F.scaled_dot_product_attention(q, k, v, is_causal=seq > 1 and seq == k.shape[-2])
        return self.proj(y.transpose(1, 2).reshape(batch, seq, self.n_embd))


class GatedMLP(nn.Module):
    """SiLU-gated MLP with one fused input projection: silu(first half) * second half."""

    def __init__(self, config: HuginnConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 2 * config.intermediate_size, bias=False)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)
        self.nonlin = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)
        return self.proj(self.nonlin(gate) * up)


class SandwichBlock(nn.Module):
    """Norm-attention-residual-norm, norm-MLP-residual-norm.

    The only positional argument is the residual stream, so forward
    pre-hooks see (and may replace) exactly the block input; the output is
    a plain tensor, the residual stream after this block.
    """

    def __init__(self, config: HuginnConfig, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.norm_1 = RMSNorm(config.n_embd, eps=config.norm_eps)
        self.attn = CausalSelfAttention(config)
        self.norm_2 = RMSNorm(config.n_embd, eps=config.norm_eps)
        self.mlp = GatedMLP(config)
        self.norm_3 = RMSNorm(config.n_embd, eps=config.norm_eps)
        self.norm_4 = RMSNorm(config.n_embd, eps=config.norm_eps)

    def forward(
        self,
        x: Tensor,
        *,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None = None,
        cache: Cache | None = None,
        cache_index: int = 0,
    ) -> Tensor:
        x = self.norm_2(self.attn(self.norm_1(x), cos, sin, mask, cache, cache_index) + x)
        return self.norm_4(self.mlp(self.norm_3(x)) + x)


class EmbeddingScale(nn.Module):
    """Multiplies the token embedding by sqrt(n_embd).

    A parameter-free module (no weight names change) so that the scaled
    embedding — the real input of the first block — has a hook point; its
    output is what latentrun calls ``embed``.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale if self.scale != 1 else x


# --------------------------------------------------------------------------- outputs


@dataclass
class HuginnCausalLMOutput(ModelOutput):
    """The published output fields; ``hidden_states`` is latentrun's per-visit tuple.

    ``hidden_states`` with ``output_hidden_states=True``: a tuple of
    ``1 + n_prelude + n_core * num_steps + n_coda`` tensors [B, S, n_embd]:
    the scaled embedding, then every block output in visiting order, without
    the final norm. Without that flag but with ``output_details["return_head"]``
    it is the published single tensor (final-normed coda output).
    ``latent_states`` is ``ln_f`` of the last core output (the coda input).
    """

    loss: Tensor | None = None
    log_ppl: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: Cache | None = None
    latent_states: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | Tensor | None = None
    attention_maps: dict[int, Tensor] | None = None
    stats: dict | None = None


_DEFAULT_OUTPUT_DETAILS = {"return_logits": True, "return_latents": True, "return_head": False, "return_stats": False}


# --------------------------------------------------------------------------- model


class HuginnPreTrainedModel(PreTrainedModel):
    """Weight init and transformers glue shared by the Huginn classes."""

    config_class = HuginnConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["SandwichBlock"]
    _skip_keys_device_placement = ["past_key_values"]
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}
    # The published checkpoint stores its RoPE table; we recompute it from the config.
    _keys_to_ignore_on_load_unexpected = [r"^freqs_cis$"]
    _supports_sdpa = True
    _supports_attention_backend = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Truncated-normal init with the published standard deviations.

        Matters only for models made from scratch (tests, example models);
        loaded weights are never touched.
        """
        values = self.config.init_values
        std, out_std = float(values["std"]), float(values["out_proj"])

        def tnormal(t: Tensor, s: float) -> None:
            hf_init.trunc_normal_(t, mean=0.0, std=s, a=-3 * s, b=3 * s)

        # The dotted name picks the published std per projection (cheap: ~100 modules).
        name = next((n for n, m in self.named_modules() if m is module), "")

        if isinstance(module, RMSNorm):
            hf_init.ones_(module.weight)
        elif isinstance(module, CausalSelfAttention):
            if module.qk_bias is not None:
                hf_init.zeros_(module.qk_bias)
        elif isinstance(module, nn.Embedding):
            tnormal(module.weight, float(values["embedding"]))
        elif isinstance(module, nn.Linear):
            if name.endswith("mlp.fc"):
                # Fused gate/up: the gate half gets std, the up half the small out_proj std.
                fused = torch.empty_like(module.weight)
                half = fused.shape[0] // 2
                torch.nn.init.trunc_normal_(fused[:half], mean=0.0, std=std, a=-3 * std, b=3 * std)
                torch.nn.init.trunc_normal_(fused[half:], mean=0.0, std=out_std, a=-3 * out_std, b=3 * out_std)
                hf_init.copy_(module.weight, fused)
            elif name.endswith("mlp.proj") or name.endswith("attn.proj"):
                tnormal(module.weight, out_std)
            else:  # Wqkv, adapter, lm_head
                tnormal(module.weight, std)
            if module.bias is not None:
                hf_init.zeros_(module.bias)


class HuginnForCausalLM(HuginnPreTrainedModel, GenerationMixin):
    """Huginn-0125 with per-visit hidden states, visit tracking and a padding-aware mask.

    Forward accepts the published arguments (``num_steps``, ``init_scale``,
    ``input_states``, ``output_details``, ``input_embeds``, ...), so code
    written for the official remote code runs unchanged; see docs/huginn.md
    for the few documented differences.
    """

    def __init__(self, config: HuginnConfig) -> None:
        super().__init__(config)
        n_pre, n_core, n_coda = config.n_layers_in_prelude, config.n_layers_in_recurrent_block, config.n_layers_in_coda
        coda_offset = n_pre + n_core * config.mean_recurrence
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                prelude=nn.ModuleList(SandwichBlock(config, i) for i in range(n_pre)),
                adapter=nn.Linear(2 * config.n_embd, config.n_embd, bias=config.bias),
                core_block=nn.ModuleList(SandwichBlock(config, n_pre + i) for i in range(n_core)),
                coda=nn.ModuleList(SandwichBlock(config, coda_offset + i) for i in range(n_coda)),
                ln_f=RMSNorm(config.n_embd, eps=config.norm_eps),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.embedding_scale = EmbeddingScale(float(config.init_values["embed_scale"]))
        # Visit tracking, read by latentrun's layer adapter (models/huginn/adapter.py).
        self.current_layer_index: int | None = None
        self.current_visit: tuple | None = None
        self.last_num_steps: int | None = None
        self.post_init()

    # ---- transformers accessors

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer["wte"]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer["wte"] = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @property
    def emb_scale(self) -> float:
        """The published name of the embedding multiplier (sqrt(n_embd))."""
        return self.embedding_scale.scale

    def numbering(self, num_steps: int | None = None) -> HuginnNumbering:
        """Flat layer numbering for a run with ``num_steps`` (default: config.mean_recurrence)."""
        c = self.config
        steps = c.mean_recurrence if num_steps is None else int(num_steps)
        return HuginnNumbering(c.n_layers_in_prelude, c.n_layers_in_recurrent_block, c.n_layers_in_coda, steps)

    # ---- pieces of the forward

    def initialize_state(
        self, input_embeds: Tensor, scale: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """The random initial latent state (published "like-init").

        Truncated normal (±3σ) with σ = init std × ``scale``, times
        sqrt(n_embd); ``scale=0`` gives zeros. It draws a normal sample first
        and then the truncated one, like the published code, so the same
        torch seed yields the same state; pass ``generator`` to make it
        reproducible without touching the global RNG.
        """
        std = float(self.config.init_values["std"]) * float(scale)
        if std <= 0:
            return torch.zeros_like(input_embeds)
        x = torch.randn(
            input_embeds.shape, dtype=input_embeds.dtype, device=input_embeds.device, generator=generator
        )
        torch.nn.init.trunc_normal_(x, mean=0.0, std=std, a=-3 * std, b=3 * std, generator=generator)
        return self.embedding_scale(x)

    def _sample_num_steps(self) -> tuple[int, int]:
        """Steps without / with gradient: the mean in eval, the published random schedule in training."""
        c = self.config
        if not self.training:
            return int(c.mean_recurrence), 0
        no_grad_mean = max(c.mean_recurrence - c.mean_backprop_depth, 0)
        backprop = c.mean_backprop_depth
        sigma = 0.5
        mu = math.log(no_grad_mean + backprop) - sigma**2 / 2
        rate = torch.zeros(1).log_normal_(mean=mu, std=sigma)
        total = int(torch.poisson(rate).item()) + 1
        return max(total - backprop, 0), min(backprop, total)

    @staticmethod
    def _split_num_steps(num_steps: Any) -> tuple[int, int] | None:
        """``num_steps`` as (steps without gradient, steps with gradient).

        An int runs all steps under the ambient grad mode (the published
        code runs them all without gradient); a pair is honoured as given.
        """
        if num_steps is None:
            return None
        if isinstance(num_steps, Tensor):
            if num_steps.numel() == 1:
                return 0, int(num_steps.item())
            values = [int(v) for v in num_steps.flatten().tolist()]
        elif isinstance(num_steps, (list, tuple)):
            values = [int(v) for v in num_steps]
        else:
            return 0, int(num_steps)
        if len(values) == 1:
            return 0, values[0]
        if len(values) != 2:
            raise ValueError(f"num_steps must be an int or a (no_grad, with_grad) pair, got {num_steps!r}")
        return values[0], values[1]

    def _maybe_inject_noise(self, x: Tensor, step: int) -> Tensor:
        """Optional test-time noise on the state (config.test_time_noise; off in the published config)."""
        c = self.config
        if not c.test_time_noise or c.test_time_noise <= 0:
            return x
        n = c.test_time_noise * float(c.init_values["std"]) * self.emb_scale
        kind = c.test_time_noise_type
        if kind == "geom":
            w = n / (step + 1)
        elif kind == "sqrt":
            w = n / math.sqrt(step + 1)
        elif kind == "line":
            w = max(n, (c.mean_recurrence - step) / c.mean_recurrence)
        elif kind == "chi":
            w = 2 * torch.rand(1, device=x.device, dtype=x.dtype) * n
        elif kind == "fixed":
            w = n
        else:
            raise ValueError(f"unknown test_time_noise_type {kind!r}")
        x = x * (1 - w) + torch.randn_like(x) * w
        return self.transformer["core_block"][-1].norm_4(x)

    def _visit(self, index: int, alias: tuple) -> None:
        """Announce the block visit about to run (read by Layer.active)."""
        self.current_layer_index = index
        self.current_visit = alias

    @staticmethod
    def _positions(
        batch: int,
        seq: int,
        past: int,
        device: torch.device,
        position_ids: Tensor | None,
        cache_position: Tensor | None,
        attention_mask: Tensor | None,
    ) -> Tensor:
        """Positions [B, S]: explicit ids, else counted from the first real token of each row."""
        if position_ids is not None:
            pos = position_ids.to(device)
            if pos.dim() == 1:
                pos = pos[None]
            return pos.expand(batch, seq)
        if cache_position is not None:
            return torch.as_tensor(cache_position, device=device).reshape(1, -1).expand(batch, seq)
        if attention_mask is not None and attention_mask.dim() == 2:
            counted = attention_mask.to(device).long().cumsum(-1) - 1
            return counted.clamp(min=0)[:, -seq:]
        return torch.arange(past, past + seq, device=device)[None].expand(batch, seq)

    @staticmethod
    def _attention_bias(
        batch: int, seq: int, past: int, device: torch.device, attention_mask: Tensor | None
    ) -> Tensor | None:
        """Boolean mask [B, 1, S, K] (True = may attend) or None when plain causal attention is exact."""
        keys = past + seq
        padded = False
        if attention_mask is not None:
            if attention_mask.dim() == 2:
                if attention_mask.shape[-1] != keys:
                    raise ValueError(
                        f"attention_mask covers {attention_mask.shape[-1]} positions, expected past + new = {keys}"
                    )
                padded = not bool(attention_mask.bool().all())
            else:
                padded = True
        if not padded and (seq == 1 or past == 0):
            return None
        q_pos = torch.arange(past, keys, device=device)[:, None]
        k_pos = torch.arange(keys, device=device)[None, :]
        allowed = (k_pos <= q_pos)[None, None]  # causal, bottom-right aligned
        if padded:
            am = attention_mask.to(device)  # type: ignore[union-attr]
            # 1/0 or True/False = keep/pad; a float 4-D mask is additive (0 = keep, -inf = masked).
            am = (am == 0) if am.is_floating_point() and am.dim() == 4 else am.bool()
            if am.dim() == 2:
                allowed = allowed & am[:, None, None, :]
            elif am.dim() == 3:
                allowed = allowed & am[:, None]
            else:
                allowed = allowed & am
            # A padding query would see no key at all (NaN); let it see itself.
            allowed = allowed | (k_pos == q_pos)[None, None]
        return allowed.expand(batch, 1, seq, keys)

    @staticmethod
    def _loss(
        logits: Tensor, labels: Tensor | None, input_ids: Tensor | None, shift_labels: bool | Tensor | None
    ) -> Tensor:
        """Mean next-token cross-entropy (ignore index -100) under either labelling convention.

        The published model takes labels already aligned with the logits
        (``model(ids[:, :-1], labels=ids[:, 1:])``); transformers code passes
        ``labels=input_ids`` and expects the model to shift. With
        ``shift_labels=None`` the model tells them apart: labels whose
        non-ignored entries all equal ``input_ids`` would ask each position to
        predict itself — never meaningful — so they are shifted. ``True`` /
        ``False`` force a convention; a tensor is taken as pre-shifted labels
        (transformers' own ``shift_labels`` argument).
        """
        if isinstance(shift_labels, Tensor):
            aligned_logits, aligned = logits, shift_labels
        else:
            assert labels is not None
            shift = shift_labels
            if shift is None:
                keep = labels != -100
                shift = (
                    input_ids is not None
                    and labels.shape == input_ids.shape
                    and bool(keep.any())
                    and bool((labels.to(input_ids.device)[keep] == input_ids[keep]).all())
                )
            aligned_logits, aligned = (logits[:, :-1], labels[:, 1:]) if shift else (logits, labels)
        if aligned_logits.shape[1] != aligned.shape[1]:
            raise ValueError(
                f"labels cover {aligned.shape[1]} positions but the logits {aligned_logits.shape[1]} "
                "(logits_to_keep with labels?)"
            )
        return F.cross_entropy(
            aligned_logits.reshape(-1, aligned_logits.shape[-1]),
            aligned.reshape(-1).to(aligned_logits.device),
            ignore_index=-100,
        )

    # ---- forward

    def forward(
        self,
        input_ids: Tensor | None = None,
        input_embeds: Tensor | None = None,
        input_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        num_steps: int | Tensor | Sequence[int] | None = None,
        past_key_values: Cache | None = None,
        output_details: dict | None = None,
        use_cache: bool | None = None,
        cache_position: Tensor | None = None,
        init_scale: float = 1.0,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
        shift_labels: bool | Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> HuginnCausalLMOutput | tuple:
        """One forward pass.

        ``num_steps``: recurrence steps (int) or a (no_grad, with_grad) pair;
        None = ``config.mean_recurrence`` in eval. ``init_scale`` scales the
        random initial state (0 = zero state); ``generator`` seeds it.
        ``labels`` are aligned with the logits, as in the published model
        (the caller shifts), except that labels equal to ``input_ids`` (the
        transformers convention) are shifted here — see :meth:`_loss`.
        ``use_cache`` defaults
        to False, as published.
        """
        details = dict(_DEFAULT_OUTPUT_DETAILS)
        if output_details:
            details.update(output_details)
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if return_dict is None:
            return_dict = self.config.return_dict
        c = self.config

        embeds = inputs_embeds if inputs_embeds is not None else input_embeds
        if embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or input_embeds")
            embeds = self.transformer["wte"](input_ids)
        x = self.embedding_scale(embeds)
        batch, seq = x.shape[:2]

        cache: Cache | None = past_key_values if use_cache or past_key_values is not None else None
        if use_cache is False:
            cache = None
        if cache is not None and not isinstance(cache, HuginnCache):
            if cache.get_seq_length() != 0:
                raise ValueError("a filled non-Huginn cache cannot be reused; pass a HuginnCache")
            cache = HuginnCache()  # generate() hands us a per-module DynamicCache; we need one per visit
        if use_cache and cache is None:
            cache = HuginnCache()
        past = cache.get_seq_length() if cache is not None else 0

        positions = self._positions(batch, seq, past, x.device, position_ids, cache_position, attention_mask)
        cos, sin = rope_angles(positions, c.head_dim, float(c.rope_base))
        mask = self._attention_bias(batch, seq, past, x.device, attention_mask)

        split = self._split_num_steps(num_steps)
        steps_no_grad, steps_grad = split if split is not None else self._sample_num_steps()
        total_steps = steps_no_grad + steps_grad
        self.last_num_steps = total_steps
        numbering = self.numbering(total_steps)
        n_pre, n_core, n_coda = numbering.n_prelude, numbering.n_core, numbering.n_coda

        hidden: list[Tensor] | None = [x] if output_hidden_states else None
        rope = dict(cos=cos, sin=sin, mask=mask, cache=cache)
        try:
            for i, block in enumerate(self.transformer["prelude"]):
                self._visit(i, ("prelude", i))
                x = block(x, cache_index=i, **rope)
                if hidden is not None:
                    hidden.append(x)
            prelude_out = x

            if input_states is None:
                state = self.initialize_state(prelude_out, init_scale, generator)
            else:
                state = input_states.clone()
            previous = state
            for step in range(total_steps):
                with torch.set_grad_enabled(torch.is_grad_enabled() and step >= steps_no_grad):
                    previous = state
                    state = self._maybe_inject_noise(state, step)
                    state = self.transformer["adapter"](torch.cat([state, prelude_out.to(state.device)], dim=-1))
                    for j, block in enumerate(self.transformer["core_block"]):
                        self._visit(numbering.core_index(j, step), ("core", j, step))
                        state = block(state, cache_index=n_pre + n_coda + step * n_core + j, **rope)
                        if hidden is not None:
                            hidden.append(state)
            x = self.transformer["ln_f"](state)
            latent_states = x

            for i, block in enumerate(self.transformer["coda"]):
                self._visit(numbering.coda_index(i), ("coda", i))
                x = block(x, cache_index=n_pre + i, **rope)
                if hidden is not None:
                    hidden.append(x)
        finally:
            self.current_layer_index = None
            self.current_visit = None
        x = self.transformer["ln_f"](x)

        head_in = x[:, -logits_to_keep:] if logits_to_keep else x
        logits = self.lm_head(head_in).float()
        loss = log_ppl = None
        if labels is not None or isinstance(shift_labels, Tensor):
            loss = self._loss(logits, labels, input_ids, shift_labels)
            log_ppl = loss.detach().clone()

        stats = None
        if details.get("return_stats"):
            probs = torch.softmax(logits, dim=-1)
            stats = {
                "entropy": torch.where(probs > 0, -probs * probs.log(), 0).sum(dim=-1),
                "residual_diff": (state - previous).norm(dim=-1),
                "rel_residual": (state - previous).norm(dim=-1) / previous.norm(dim=-1),
                "num_steps_no_grad": steps_no_grad,
                "num_steps_with_grad": steps_grad,
            }
        if hidden is not None:
            hidden_out: tuple[Tensor, ...] | Tensor | None = tuple(hidden)
        elif details.get("return_head"):
            hidden_out = x
        else:
            hidden_out = None

        out = HuginnCausalLMOutput(
            loss=loss,
            log_ppl=log_ppl,
            logits=logits if details.get("return_logits", True) else None,
            past_key_values=cache if use_cache or past_key_values is not None else None,
            latent_states=latent_states.detach().clone() if details.get("return_latents", True) else None,
            hidden_states=hidden_out,
            stats=stats,
        )
        return out if return_dict else out.to_tuple()


# The published class name, for code written against the official files.
RavenForCausalLM = HuginnForCausalLM
