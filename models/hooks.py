"""Hook points and the machinery shared by capture and steering.

Hook points per layer (TransformerLens names accepted as aliases):

=========  ======================  ==================================
ours       TransformerLens         where
=========  ======================  ==================================
``post``   ``resid_post``          output of the block (residual stream after it)
``pre``    ``resid_pre``           input of the block
``attn``   ``attn_out``            output of the attention module
``mlp``    ``mlp_out``             output of the MLP module
``embed``  ``hook_embed``          residual stream entering layer 0 (capture only)
=========  ======================  ==================================

Every context manager registers one forward pre-hook on the model
(:class:`InputTracker`) that remembers the current forward's ``input_ids``,
``attention_mask`` and cache length, so layer hooks can find the last real
token, the real tokens, or the generated tokens once per forward, not once
per layer. The public context managers live in :mod:`models.capture` and
:mod:`models.steering` and are re-exported here::

    from models.hooks import capture, capture_grads, steer, Accumulator
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from models.layers import Layer, get_adapter, get_layers, resolve_layer  # noqa: F401 (get_adapter re-exported)

POINTS = ("post", "pre", "attn", "mlp")
_POINT_ALIASES = {
    "post": "post", "resid_post": "post", "hook_resid_post": "post", "block": "post", "output": "post",
    "pre": "pre", "resid_pre": "pre", "hook_resid_pre": "pre", "input": "pre",
    "attn": "attn", "attn_out": "attn", "hook_attn_out": "attn", "attention": "attn",
    "mlp": "mlp", "mlp_out": "mlp", "hook_mlp_out": "mlp",
    "embed": "embed", "hook_embed": "embed", "embedding": "embed",
}
EMBED = "embed"


def normalize_point(point: str) -> str:
    """Our name for a hook point (``resid_post`` -> ``post``); a clear error otherwise."""
    try:
        return _POINT_ALIASES[str(point).lower()]
    except KeyError:
        raise ValueError(
            f"unknown hook point {point!r}; use one of post, pre, attn, mlp "
            "(or resid_post, resid_pre, attn_out, mlp_out)"
        ) from None


def pad_token_id_of(model: Any) -> int | None:
    """The pad token id the model knows of (config, then generation config)."""
    for holder in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        value = getattr(holder, "pad_token_id", None) if holder is not None else None
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return None


class InputTracker:
    """Remembers what the current forward was called with.

    A forward pre-hook (``with_kwargs``) on the model records ``input_ids``,
    ``attention_mask`` and the cache length. Position masks derived from them
    are computed lazily, once per forward and device, and shared by all layer
    hooks. The forward's own ``attention_mask`` is used when it has one (it is
    always right for that forward, e.g. each ``generate`` step); the mask given
    to the context fills in for forwards called without one.

    Real tokens: the attention mask when there is one; else, when a pad token
    id is known, everything up to the last non-pad token (right padding, as in
    lm-eval's loglikelihood batches); else every token.

    Generated tokens: positions at or after the prompt length, where the
    prompt is the first forward that starts a sequence (no cache, and not a
    one-token-longer continuation of the previous forward's ``input_ids``, as
    ``generate`` without cache does).
    """

    def __init__(self, model: torch.nn.Module, attention_mask: torch.Tensor | None = None,
                 pad_token_id: int | None = None, prompt_length: int | None = None) -> None:
        self.model = model
        self.fixed_mask = attention_mask
        self.pad_token_id = pad_token_id if pad_token_id is not None else pad_token_id_of(model)
        self.fixed_prompt_length = prompt_length
        self.input_ids: torch.Tensor | None = None
        self.attention_mask: torch.Tensor | None = attention_mask
        self.past_length = 0
        self.prompt_length: int | None = prompt_length
        self.forwards = 0
        self._prev_ids: torch.Tensor | None = None
        self._cache: dict[tuple, torch.Tensor | None] = {}
        self._handle = None

    # -- lifecycle ---------------------------------------------------------
    def install(self) -> InputTracker:
        self._handle = self.model.register_forward_pre_hook(self._pre_hook, with_kwargs=True, prepend=True)
        return self

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point():
            ids = args[0]
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            mask = args[1]
        if isinstance(mask, torch.Tensor) and mask.dim() != 2:
            mask = None  # a 4-D custom mask: positions cannot be read from it
        embeds = kwargs.get("inputs_embeds")
        length = ids.shape[-1] if ids is not None else (embeds.shape[1] if embeds is not None else None)
        past = self._past_length(kwargs, mask, length)
        self._note_prompt(ids, past, length)
        self.input_ids = ids
        self.attention_mask = mask if mask is not None else self.fixed_mask
        self.past_length = past
        self.forwards += 1
        self._cache.clear()

    @staticmethod
    def _past_length(kwargs: dict, mask: torch.Tensor | None, length: int | None) -> int:
        cache = kwargs.get("past_key_values")
        if cache is not None:
            get = getattr(cache, "get_seq_length", None)
            if get is not None:
                try:
                    return int(get())
                except Exception:  # some caches need a layer index; fall through
                    pass
        positions = kwargs.get("cache_position")
        if isinstance(positions, torch.Tensor) and positions.numel():
            return int(positions.reshape(-1)[0])
        if mask is not None and length is not None and mask.shape[-1] > length:
            return int(mask.shape[-1] - length)
        return 0

    def _note_prompt(self, ids: torch.Tensor | None, past: int, length: int | None) -> None:
        if self.fixed_prompt_length is not None:
            return
        if past > 0:
            self._prev_ids = None  # a cached run: the next cache-less forward starts a new sequence
            if self.prompt_length is None:
                self.prompt_length = past  # a cache made elsewhere: its tokens are the prompt
            return
        prev = self._prev_ids
        continues = (
            ids is not None and prev is not None and self.prompt_length is not None
            and ids.shape[0] == prev.shape[0] and ids.shape[-1] == prev.shape[-1] + 1
            and bool(torch.equal(ids[..., : prev.shape[-1]], prev))
        )
        if not continues:
            self.prompt_length = length
        self._prev_ids = ids

    # -- position helpers (once per forward and device) ---------------------
    def real_mask(self, length: int, device: torch.device) -> torch.Tensor | None:
        """Bool ``[batch, length]`` of real tokens in the current chunk, or None (all real)."""
        key = ("real", length, device)
        if key in self._cache:
            return self._cache[key]
        mask = self.attention_mask
        result: torch.Tensor | None = None
        if mask is not None:
            result = mask[:, -length:].to(device=device, dtype=torch.bool)
        elif self.input_ids is not None and self.pad_token_id is not None and self.input_ids.shape[-1] == length:
            last = self.last_index(length, device)
            result = torch.arange(length, device=device).unsqueeze(0) <= last.unsqueeze(1)
        self._cache[key] = result
        return result

    def last_index(self, length: int, device: torch.device) -> torch.Tensor | None:
        """Long ``[batch]``: column of the last real token, or None (it is ``length - 1``)."""
        key = ("last", length, device)
        if key in self._cache:
            return self._cache[key]
        result: torch.Tensor | None = None
        if self.attention_mask is not None:
            real = self.attention_mask[:, -length:].to(device=device)
            result = (real.long() * torch.arange(length, device=device)).argmax(-1)
        elif self.input_ids is not None and self.pad_token_id is not None and self.input_ids.shape[-1] == length:
            real = self.input_ids.to(device) != self.pad_token_id
            result = (real.long() * torch.arange(length, device=device)).argmax(-1)
        self._cache[key] = result
        return result

    def rows(self, batch: int, device: torch.device) -> torch.Tensor:
        """``arange(batch)`` on ``device``, made once per forward."""
        key = ("rows", batch, device)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = torch.arange(batch, device=device)
        return found

    def generated_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """Bool ``[length]``: which columns of the current chunk are generated tokens."""
        key = ("gen", length, device)
        if key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        prompt = self.prompt_length if self.prompt_length is not None else length + self.past_length
        result = (torch.arange(length, device=device) + self.past_length) >= prompt
        self._cache[key] = result
        return result

    def selection(self, hidden: torch.Tensor, positions: str) -> torch.Tensor | None:
        """``[batch, length, 1]`` 0/1 mask in hidden's dtype for ``positions``, or None for all."""
        if positions == "all":
            return None
        length = hidden.shape[1]
        key = ("sel", positions, length, hidden.device, hidden.dtype, hidden.shape[0])
        if key in self._cache:
            return self._cache[key]
        batch = hidden.shape[0]
        if positions == "last":
            last = self.last_index(length, hidden.device)
            sel = torch.zeros(batch, length, dtype=hidden.dtype, device=hidden.device)
            if last is None:
                sel[:, -1] = 1
            else:
                sel[torch.arange(batch, device=hidden.device), last] = 1
        elif positions == "generated":
            sel = self.generated_mask(length, hidden.device).to(hidden.dtype).expand(batch, length)
        else:
            raise ValueError(f"positions must be 'all', 'last' or 'generated', not {positions!r}")
        sel = sel.unsqueeze(-1)
        self._cache[key] = sel
        return sel


# -- installing hooks on layers ---------------------------------------------

def _hidden_of(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _replace_hidden(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    if isinstance(output, list):
        return [hidden, *output[1:]]
    return hidden


def module_for(layer: Layer, point: str) -> torch.nn.Module:
    """The module a hook point of ``layer`` lives on; a clear error if it has none."""
    if point in ("post", "pre"):
        return layer.block
    module = layer.attention if point == "attn" else layer.mlp
    if module is None:
        raise ValueError(f"layer {layer.name} has no separate {point} module; use point 'post' or 'pre'")
    return module


Action = Callable[[Layer, torch.Tensor], "torch.Tensor | None"]


class HookSet:
    """Forward hooks for a set of (layer, point) pairs, removed all at once.

    ``action(layer, hidden)`` returns a replacement hidden state or None.
    Layers sharing one module (Huginn's core blocks) get a single hook that
    dispatches to the layer whose ``active()`` is True.
    """

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def add(self, layers: Iterable[Layer], point: str, action: Action, prepend: bool = False) -> None:
        groups: dict[int, tuple[torch.nn.Module, list[Layer]]] = {}
        for layer in layers:
            module = module_for(layer, point)
            groups.setdefault(id(module), (module, []))[1].append(layer)
        for module, members in groups.values():
            pick = self._picker(members)
            if point == "pre":
                self.handles.append(module.register_forward_pre_hook(
                    self._pre_hook(pick, action), with_kwargs=True, prepend=prepend))
            else:
                self.handles.append(module.register_forward_hook(self._post_hook(pick, action), prepend=prepend))

    @staticmethod
    def _picker(members: list[Layer]) -> Callable[[], Layer | None]:
        if len(members) == 1 and members[0].active is None:
            only = members[0]
            return lambda: only

        def pick() -> Layer | None:
            for layer in members:
                if layer.active is None or layer.active():
                    return layer
            return None

        return pick

    @staticmethod
    def _post_hook(pick: Callable[[], Layer | None], action: Action) -> Callable:
        def hook(module: Any, args: Any, output: Any) -> Any:
            layer = pick()
            if layer is None:
                return None
            new = action(layer, _hidden_of(output))
            return None if new is None else _replace_hidden(output, new)

        return hook

    @staticmethod
    def _pre_hook(pick: Callable[[], Layer | None], action: Action) -> Callable:
        def hook(module: Any, args: tuple, kwargs: dict) -> Any:
            layer = pick()
            if layer is None:
                return None
            if args:
                new = action(layer, args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            if "hidden_states" in kwargs:
                new = action(layer, kwargs["hidden_states"])
                return None if new is None else (args, {**kwargs, "hidden_states": new})
            return None

        return hook

    def add_module_hook(self, module: torch.nn.Module, hook: Callable, pre: bool = False, **kw: Any) -> None:
        handle = module.register_forward_pre_hook(hook, **kw) if pre else module.register_forward_hook(hook, **kw)
        self.handles.append(handle)

    def remove(self) -> None:
        while self.handles:
            self.handles.pop().remove()


class HookContext:
    """The lifecycle every hook context shares (capture, steering, patching).

    Entering installs the input tracker and the subclass's hooks; leaving,
    or any failure while installing, removes every one of them.
    """

    tracker: InputTracker
    _hooks: HookSet

    def _install(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.tracker.install()
            self._install()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this context installed (also done on exit)."""
        self._hooks.remove()
        self.tracker.remove()


def select_layers(model: Any, keys: Any, all_layers: list[Layer] | None = None,
                  allow_embed: bool = False) -> list[Layer | str]:
    """Resolve ``keys`` (None/"all", one key, or a list) into layers, ``"embed"`` kept as is."""
    all_layers = get_layers(model) if all_layers is None else all_layers
    if keys is None or (isinstance(keys, str) and keys == "all"):
        return list(all_layers)
    if isinstance(keys, torch.Tensor):
        keys = keys.tolist()
    if isinstance(keys, (int, str)):
        keys = [keys]
    elif isinstance(keys, tuple) and any(
        layer.alias is not None and tuple(layer.alias) == keys for layer in all_layers
    ):
        keys = [keys]  # one alias such as ("core", 1, 5)
    out: list[Layer | str] = []
    for key in keys:
        if isinstance(key, str) and key.lower() in ("embed", "hook_embed", "embedding"):
            if not allow_embed:
                raise ValueError("'embed' is a capture point only; choose a layer index")
            out.append(EMBED)
        else:
            out.append(resolve_layer(model, key, all_layers))
    return out


__all__ = [
    "POINTS", "EMBED", "InputTracker", "HookSet", "normalize_point", "module_for", "select_layers",
    "pad_token_id_of", "capture", "capture_grads", "Capture", "steer", "Steering", "Accumulator",
    "get_adapter",
]

_LAZY = {
    "capture": "models.capture", "capture_grads": "models.capture", "Capture": "models.capture",
    "GradCapture": "models.capture",
    "steer": "models.steering", "Steering": "models.steering",
    "Accumulator": "models.accumulators",
}


def __getattr__(name: str) -> Any:
    """Re-export the context managers without import cycles."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models.hooks' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
