"""Steer a model along directions, exactly as DESIGN.md ("Models") defines it.

With ``u = d / ||d||``, ``s`` the scale and ``m`` the layer's overall mean
activation:

====================================  ======================================
mode / normalization                  new hidden state
====================================  ======================================
addition, ``unit``                    ``h + s·u``
addition, ``overall_magnitude``       ``h + s·||m||·u``
ablation                              ``h − (h·u)·u``
amplification, ``unit``               ``h + s·(h·u)·u``
amplification, ``overall_magnitude``  ``h + s·||m||·(h·u)·u`` (the seed's
                                      SCALE_WITH_OVERALL_MAGNITUDE amplification)
====================================  ======================================

applied at one hook point of the chosen layers, on ``"all"`` tokens, the
``"last"`` real token, or ``"generated"`` tokens only::

    with steer(model, [4, 5], direction, mode="addition", scale=8.0, positions="last"):
        logits = model(**batch).logits

The model's parameters are never touched; every hook is removed on exit,
also on exceptions. Steering hooks are put in front of the module's other
hooks, so a :func:`models.capture.capture` sees the steered activations
whichever context is entered first.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from models.hooks import HookContext, HookSet, InputTracker, normalize_point, select_layers
from models.layers import Layer, get_layers, hidden_size, resolve_layer

_MODES = {
    "addition": "addition", "add": "addition", "actadd": "addition",
    "ablation": "ablation", "ablate": "ablation", "directional_ablation": "ablation",
    "amplification": "amplification", "amplify": "amplification",
}
_NORMALIZATIONS = {
    "unit": "unit", "none": "unit", None: "unit",
    "overall_magnitude": "overall_magnitude", "scale_with_overall_magnitude": "overall_magnitude",
}
_POSITIONS = ("all", "last", "generated")


def _as_vector(value: Any, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach()
    if tensor.dim() != 1:
        raise ValueError(f"{what} must be a vector, got shape {tuple(tensor.shape)}")
    return tensor.to(device="cpu", dtype=torch.float64)


def _per_layer(model: Any, value: Any, layers: list[Layer], all_layers: list[Layer], what: str) -> dict[int, torch.Tensor]:
    """One vector per layer index from a vector, a ``[n_layers, hidden]`` tensor or a mapping."""
    if isinstance(value, Mapping):
        out = {}
        for key, vector in value.items():
            out[resolve_layer(model, key, all_layers).index] = _as_vector(vector, f"{what} for layer {key!r}")
        return out
    tensor = torch.as_tensor(value).detach()
    if tensor.dim() == 1:
        return {layer.index: _as_vector(tensor, what) for layer in layers}
    if tensor.dim() == 2 and tensor.shape[0] == len(layers):
        return {layer.index: _as_vector(row, what) for layer, row in zip(layers, tensor)}
    raise ValueError(
        f"{what}: give one vector, a [n_layers={len(layers)}, hidden] tensor or a {{layer: vector}} mapping; "
        f"got shape {tuple(tensor.shape)}"
    )


class Steering(HookContext):
    """The context manager behind :func:`steer`; see the module docstring."""

    def __init__(self, model: torch.nn.Module, layers: Any, directions: Any, mode: str = "addition",
                 scale: float | Mapping[Any, float] = 1.0, normalization: str | None = "unit",
                 overall_mean: Any = None, point: str = "post", positions: str = "all",
                 attention_mask: torch.Tensor | None = None, pad_token_id: int | None = None,
                 prompt_length: int | None = None) -> None:
        self.model = model
        try:
            self.mode = _MODES[str(mode).lower()]
        except KeyError:
            raise ValueError(f"mode must be addition, ablation or amplification, not {mode!r}") from None
        key = normalization.lower() if isinstance(normalization, str) else normalization
        if key not in _NORMALIZATIONS:
            raise ValueError(f"normalization must be 'unit' or 'overall_magnitude', not {normalization!r}")
        self.normalization = _NORMALIZATIONS[key]
        if self.normalization == "overall_magnitude" and self.mode == "ablation":
            raise ValueError("normalization='overall_magnitude' scales additions (h + s·||m||·u) and "
                             "amplifications (h + s·||m||·(h·u)·u); ablation does not use it")
        if positions not in _POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(_POSITIONS)}, not {positions!r}")
        self.positions = positions
        self.point = normalize_point(point)
        if self.point == "embed":
            raise ValueError("steering needs a layer point: post, pre, attn or mlp")

        all_layers = get_layers(model)
        if layers is None and isinstance(directions, Mapping):
            layers = list(directions.keys())
        if layers is None:
            raise ValueError("steer: say which layers to steer (or give directions as {layer: vector})")
        self.layers: list[Layer] = [x for x in select_layers(model, layers, all_layers) if isinstance(x, Layer)]
        width = hidden_size(model)
        raw = _per_layer(model, directions, self.layers, all_layers, "direction")
        means = _per_layer(model, overall_mean, self.layers, all_layers, "overall_mean") \
            if overall_mean is not None else {}

        self._unit: dict[int, torch.Tensor] = {}
        self._coef: dict[int, float] = {}
        for layer in self.layers:
            if layer.index not in raw:
                raise ValueError(f"no direction given for layer {layer.name} (index {layer.index})")
            d = raw[layer.index]
            if d.shape[0] != width:
                raise ValueError(f"direction for layer {layer.name} has width {d.shape[0]}, "
                                 f"but the model's hidden size is {width}")
            norm = float(d.norm())
            if not norm > 0 or norm != norm:
                raise ValueError(f"direction for layer {layer.name} has norm {norm}; it cannot be normalised")
            self._unit[layer.index] = d / norm
            s = self._scale_for(scale, layer)
            if self.normalization == "overall_magnitude":
                if layer.index not in means:
                    raise ValueError(f"normalization='overall_magnitude' needs overall_mean for layer {layer.name}")
                m = means[layer.index]
                if m.shape[0] != width:
                    raise ValueError(f"overall_mean for layer {layer.name} has width {m.shape[0]}, "
                                     f"but the model's hidden size is {width}")
                s = s * float(m.norm())
            self._coef[layer.index] = s
        self._cast: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.tracker = InputTracker(model, attention_mask=attention_mask, pad_token_id=pad_token_id,
                                    prompt_length=prompt_length)
        self._hooks = HookSet()

    @staticmethod
    def _scale_for(scale: Any, layer: Layer) -> float:
        if not isinstance(scale, Mapping):
            return float(scale)
        for key in (layer.index, layer.name, str(layer.index), layer.alias):
            if key is not None and key in scale:
                return float(scale[key])
        raise ValueError(f"no scale given for layer {layer.name} (index {layer.index})")

    def _vectors(self, index: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, coef·u) in the hidden state's device and dtype, converted once."""
        key = (index, hidden.device, hidden.dtype)
        found = self._cast.get(key)
        if found is None:
            u = self._unit[index]
            found = (u.to(device=hidden.device, dtype=hidden.dtype),
                     (u * self._coef[index]).to(device=hidden.device, dtype=hidden.dtype))
            self._cast[key] = found
        return found

    def _act(self, layer: Layer, h: torch.Tensor) -> torch.Tensor:
        u, v = self._vectors(layer.index, h)
        sel = self.tracker.selection(h, self.positions)
        if self.mode == "addition":
            return h + v if sel is None else h + sel * v
        proj = (h @ u).unsqueeze(-1)  # h·u per token
        if self.mode == "ablation":
            delta = proj * u
            return h - delta if sel is None else h - sel * delta
        delta = proj * v  # amplification: s·(h·u)·u
        return h + delta if sel is None else h + sel * delta

    def _install(self) -> None:
        self._hooks.add(self.layers, self.point, self._act, prepend=True)

    def unit(self, layer: Any) -> torch.Tensor:
        """The unit direction used at ``layer`` (float64, CPU)."""
        return self._unit[resolve_layer(self.model, layer).index]


def steer(model: torch.nn.Module, layers: Any, directions: Any, mode: str = "addition",
          scale: float | Mapping[Any, float] = 1.0, normalization: str | None = "unit",
          overall_mean: Any = None, point: str = "post", positions: str = "all",
          attention_mask: torch.Tensor | None = None, *, pad_token_id: int | None = None,
          prompt_length: int | None = None) -> Steering:
    """Context manager steering ``layers`` along ``directions`` (see the module docstring).

    ``directions``: one vector for every layer, a ``[n_layers, hidden]``
    tensor, or ``{layer: vector}``; ``overall_mean`` likewise (needed for
    ``normalization="overall_magnitude"``). ``scale`` is a number or
    ``{layer: number}``. ``positions="last"`` finds the last real token from
    ``attention_mask``, the forward's mask, or else trailing pad tokens
    (``pad_token_id``, default the model's); ``"generated"`` steers only
    tokens after the prompt, with or without the KV cache.
    """
    return Steering(model, layers, directions, mode=mode, scale=scale, normalization=normalization,
                    overall_mean=overall_mean, point=point, positions=positions, attention_mask=attention_mask,
                    pad_token_id=pad_token_id, prompt_length=prompt_length)
