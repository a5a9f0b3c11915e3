"""Layer adapters: the one layer numbering of latentrun, for every architecture.

``embed`` is the residual stream entering the first block; layer ``i`` is the
output of the i-th decoder block in the order the forward pass visits them
(0-based). transformers' ``output_hidden_states`` tuple is shifted by one:
``hidden_states[0]`` is the embedding and ``hidden_states[i + 1]`` is our
layer ``i`` (the last entry has the final norm applied). See docs/models.md.

An adapter knows where one family of models keeps its blocks. Plugins add
adapters through the ``latentrun_model_adapters`` hook; they are asked first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class Layer:
    """One residual-stream layer and the modules its hook points live on.

    ``block``'s forward output (a tensor, or a tuple whose ``[0]`` is the
    hidden state) is the residual stream after this layer. ``active`` is set
    when ``block`` is visited more than once per forward (Huginn's shared
    core blocks): it returns True only while *this* visit runs, and hooks act
    only then.
    """

    index: int
    name: str
    block: torch.nn.Module
    attention: torch.nn.Module | None
    mlp: torch.nn.Module | None
    alias: tuple | None = None
    active: Callable[[], bool] | None = None

    def __repr__(self) -> str:  # the modules' reprs are huge; keep it readable
        extra = f", alias={self.alias!r}" if self.alias is not None else ""
        return f"Layer(index={self.index}, name={self.name!r}{extra})"


@runtime_checkable
class ModelAdapter(Protocol):
    """What ``models/`` needs to know about an architecture."""

    name: str

    def matches(self, model: Any) -> bool: ...

    def embedding(self, model: Any) -> torch.nn.Module: ...

    def layers(self, model: Any) -> list[Layer]: ...

    def final_norm(self, model: Any) -> torch.nn.Module | None: ...


class AdapterError(LookupError):
    """No adapter knows this model, or a layer key does not name a layer."""


def _get_path(obj: Any, path: str) -> Any:
    """``_get_path(model, "model.layers")`` or None when any step is missing."""
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _model_type(model: Any) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "") or "")


class StackAdapter:
    """An adapter for models that keep their blocks in one ``ModuleList``.

    ``stacks`` are dotted paths tried in order (``"model.layers"``); the
    embedding and final norm are attributes of the module holding the stack.
    Matching is structural (the stack exists and its first block has the
    named attention/MLP attributes), optionally narrowed to ``model_types``.
    """

    def __init__(
        self,
        name: str,
        stacks: tuple[str, ...],
        attention: tuple[str, ...],
        mlp: tuple[str, ...],
        embedding: tuple[str, ...],
        final_norm: tuple[str, ...],
        model_types: frozenset[str] | None = None,
        require_submodules: bool = True,
    ) -> None:
        self.name = name
        self._stacks = stacks
        self._attention = attention
        self._mlp = mlp
        self._embedding = embedding
        self._final_norm = final_norm
        self._model_types = model_types
        self._require_submodules = require_submodules

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def _stack(self, model: Any) -> tuple[str, Any] | None:
        for path in self._stacks:
            stack = _get_path(model, path)
            if isinstance(stack, torch.nn.ModuleList) and len(stack) > 0:
                return path, stack
        return None

    def _owner(self, model: Any) -> Any:
        found = self._stack(model)
        if found is None:
            raise AdapterError(f"{self.name} adapter: no block stack in {type(model).__name__}")
        path = found[0]
        return model if "." not in path else _get_path(model, path.rsplit(".", 1)[0])

    @staticmethod
    def _first_attr(module: Any, names: tuple[str, ...]) -> torch.nn.Module | None:
        for attr in names:
            sub = getattr(module, attr, None)
            if isinstance(sub, torch.nn.Module):
                return sub
        return None

    def matches(self, model: Any) -> bool:
        if self._model_types is not None and _model_type(model) not in self._model_types:
            return False
        found = self._stack(model)
        if found is None:
            return False
        first = found[1][0]
        if not self._require_submodules:
            return True
        return self._first_attr(first, self._attention) is not None and self._first_attr(first, self._mlp) is not None

    def embedding(self, model: Any) -> torch.nn.Module:
        owner = self._owner(model)
        module = self._first_attr(owner, self._embedding)
        if module is None:
            raise AdapterError(f"{self.name} adapter: no embedding ({', '.join(self._embedding)}) found")
        return module

    def layers(self, model: Any) -> list[Layer]:
        found = self._stack(model)
        if found is None:
            raise AdapterError(f"{self.name} adapter: no block stack in {type(model).__name__}")
        blocks = list(found[1])
        # Llama-style models run only the first num_hidden_layers blocks.
        limit = getattr(getattr(model, "config", None), "num_hidden_layers", None)
        if isinstance(limit, int) and 0 < limit < len(blocks):
            blocks = blocks[:limit]
        return [
            Layer(
                index=i,
                name=f"blocks.{i}",
                block=block,
                attention=self._first_attr(block, self._attention),
                mlp=self._first_attr(block, self._mlp),
            )
            for i, block in enumerate(blocks)
        ]

    def final_norm(self, model: Any) -> torch.nn.Module | None:
        return self._first_attr(self._owner(model), self._final_norm)


# Built-in adapters. Order matters only where two could match one model:
# the OLMo adapters (matched by model_type) come before the generic Llama one.
OLMO = StackAdapter(
    name="olmo",
    stacks=("model.layers", "layers"),
    attention=("self_attn",),
    mlp=("mlp",),
    embedding=("embed_tokens",),
    final_norm=("norm",),
    model_types=frozenset({"olmo", "olmo2", "olmo3", "olmoe"}),
)
# OLMo-1 checkpoints converted with the old remote code ("hf_olmo"): attention
# and MLP are computed inline in the block, so only pre/post points exist.
OLMO_REMOTE = StackAdapter(
    name="olmo-remote",
    stacks=("model.transformer.blocks", "transformer.blocks"),
    attention=("attention",),
    mlp=("ff", "mlp"),
    embedding=("wte",),
    final_norm=("ln_f",),
    model_types=frozenset({"olmo", "hf_olmo"}),
    require_submodules=False,
)
LLAMA = StackAdapter(
    name="llama",  # also Mistral, Qwen2/3, Gemma 1-3, Phi-3, ... (model.model.layers)
    stacks=("model.layers", "layers", "model.language_model.layers", "language_model.model.layers"),
    attention=("self_attn",),
    mlp=("mlp",),
    embedding=("embed_tokens",),
    final_norm=("norm",),
)
GPT2 = StackAdapter(
    name="gpt2",  # also GPT-J and GPT-Neo (transformer.h)
    stacks=("transformer.h", "h"),
    attention=("attn",),
    mlp=("mlp",),
    embedding=("wte",),
    final_norm=("ln_f",),
)
GPT_NEOX = StackAdapter(
    name="gpt_neox",  # Pythia
    stacks=("gpt_neox.layers", "layers"),
    attention=("attention",),
    mlp=("mlp",),
    embedding=("embed_in",),
    final_norm=("final_layer_norm",),
)

BUILTIN_ADAPTERS: tuple[StackAdapter, ...] = (OLMO, OLMO_REMOTE, LLAMA, GPT2, GPT_NEOX)


def plugin_adapters() -> list[Any]:
    """Adapters offered by plugins through ``latentrun_model_adapters``.

    Works without the runner (or before it exists): then there are none.
    """
    try:
        from runner.pluginmanager import get_plugin_manager
    except ImportError:
        return []
    try:
        results = get_plugin_manager().hook.latentrun_model_adapters()
    except Exception as err:  # a broken plugin must not hide the built-ins
        warnings.warn(f"latentrun_model_adapters failed ({err}); using built-in adapters only", stacklevel=2)
        return []
    flat: list[Any] = []
    for result in results or []:
        if result is None:
            continue
        flat.extend(result if isinstance(result, (list, tuple)) else [result])
    return flat


def _huginn_adapters() -> list[Any]:
    try:
        from models.huginn.adapter import HuginnAdapter
    except ImportError:
        return []
    return [HuginnAdapter()]


def all_adapters() -> list[Any]:
    """Every adapter in the order they are asked: plugins, Huginn, built-ins."""
    return [*plugin_adapters(), *_huginn_adapters(), *BUILTIN_ADAPTERS]


def get_adapter(model: Any) -> ModelAdapter:
    """The first adapter that matches ``model``; a clear error when none does."""
    adapters = all_adapters()
    for adapter in adapters:
        if adapter.matches(model):
            return adapter
    names = ", ".join(getattr(a, "name", type(a).__name__) for a in adapters)
    raise AdapterError(
        f"no layer adapter matches {type(model).__name__} (model_type={_model_type(model)!r}); "
        f"known adapters: {names}. Teach latentrun this architecture with a plugin "
        "implementing the latentrun_model_adapters hook (see docs/models.md)."
    )


def get_layers(model: Any) -> list[Layer]:
    """The model's layers in our numbering (index i = output of the i-th visited block)."""
    return get_adapter(model).layers(model)


def resolve_layer(model: Any, key: int | str | tuple, layers: list[Layer] | None = None) -> Layer:
    """Find a layer by flat index (negative counts from the end), name or alias."""
    layers = get_layers(model) if layers is None else layers
    if isinstance(key, bool):
        raise AdapterError(f"layer key {key!r} is not a layer")
    if isinstance(key, int) or (hasattr(key, "__index__") and not isinstance(key, (str, tuple))):
        i = int(key)
        if -len(layers) <= i < len(layers):
            return layers[i]
        raise AdapterError(f"layer {i} out of range: the model has {len(layers)} layers (0..{len(layers) - 1})")
    if isinstance(key, str):
        for layer in layers:
            if layer.name == key:
                return layer
        if key.lstrip("-").isdigit():
            return resolve_layer(model, int(key), layers)
    if isinstance(key, (tuple, list)):
        wanted = tuple(key)
        for layer in layers:
            if layer.alias is not None and tuple(layer.alias) == wanted:
                return layer
    sample = ", ".join(layer.name for layer in layers[:3])
    raise AdapterError(f"no layer {key!r}; use an index 0..{len(layers) - 1}, a name ({sample}, ...) or an alias")


def hidden_size(model: Any) -> int:
    """The residual-stream width, from the config or the embedding matrix."""
    config = getattr(model, "config", None)
    if config is not None:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        for attr in ("hidden_size", "n_embd", "d_model"):
            value = getattr(text, attr, None)
            if isinstance(value, int):
                return value
    weight = getattr(get_adapter(model).embedding(model), "weight", None)
    if weight is None:
        raise AdapterError(f"cannot tell the hidden size of {type(model).__name__}")
    return int(weight.shape[-1])
