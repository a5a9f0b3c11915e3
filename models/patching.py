"""Set (or add to) a layer's hidden state at one position, with a vector per row.

:func:`models.steering.steer` moves every row along one direction. Activation
patching needs more: *this* row gets *that* vector at its last real token —
the task-vector experiments replace block ``L``'s output at the last position
with the task vector of the row's own demonstrations::

    with patch(model, {5: theta}, mode="replace"):       # theta: [batch, hidden]
        logits = model(**batch).logits

``values`` maps a layer key (index, name, alias) to a ``[hidden]`` vector (every
row) or a ``[n, hidden]`` tensor; ``rows`` optionally maps the same keys to the
``n`` batch rows the vectors go to (default: rows ``0..n-1``), so one forward can
patch different rows at different layers. Modes: ``"replace"`` (``h <- v``) and
``"add"`` (``h <- h + scale·v``). ``position`` is ``"last"`` (last real token,
from the forward's attention mask, the context's, or trailing pads — see
:class:`models.hooks.InputTracker`) or a column index (negative from the end).

Built on :class:`models.hooks.HookSet`: the parameters are never modified,
every hook is removed on exit (also on exceptions), and layers of a shared
module (Huginn's core blocks) act only during their own visit.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from models.hooks import HookContext, HookSet, InputTracker, normalize_point, select_layers
from models.layers import Layer, get_layers, hidden_size

_MODES = ("replace", "add")


class Patch(HookContext):
    """The context manager behind :func:`patch`."""

    def __init__(self, model: torch.nn.Module, values: Mapping[Any, Any], mode: str = "replace",
                 scale: float = 1.0, position: int | str = "last", rows: Mapping[Any, Any] | None = None,
                 point: str = "post", attention_mask: torch.Tensor | None = None,
                 pad_token_id: int | None = None) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
        if not (position == "last" or isinstance(position, int)):
            raise ValueError(f"position must be 'last' or a column index, not {position!r}")
        self.model, self.mode, self.scale, self.position = model, mode, float(scale), position
        self.point = normalize_point(point)
        if self.point == "embed":
            raise ValueError("patching needs a layer point: post, pre, attn or mlp")
        all_layers = get_layers(model)
        width = hidden_size(model)
        self.layers: list[Layer] = []
        self._values: dict[int, torch.Tensor] = {}
        self._rows: dict[int, torch.Tensor | None] = {}
        rows = dict(rows or {})
        for key, value in values.items():
            (layer,) = select_layers(model, [key], all_layers)
            tensor = torch.as_tensor(value).detach()
            if tensor.shape[-1] != width or tensor.dim() not in (1, 2):
                raise ValueError(f"patch for layer {layer.name}: expected [hidden={width}] or [n, {width}], "
                                 f"got {tuple(tensor.shape)}")
            picked = rows.pop(key, None)
            if picked is not None:
                picked = torch.as_tensor(picked, dtype=torch.long).reshape(-1)
                if tensor.dim() == 2 and tensor.shape[0] != picked.numel():
                    raise ValueError(f"patch for layer {layer.name}: {tensor.shape[0]} vectors for "
                                     f"{picked.numel()} rows")
            if layer.index in self._values:
                raise ValueError(f"layer {layer.name} is given twice")
            self.layers.append(layer)
            self._values[layer.index] = tensor
            self._rows[layer.index] = picked
        if rows:
            raise ValueError(f"rows given for layers without values: {sorted(map(str, rows))}")
        self._cast: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.tracker = InputTracker(model, attention_mask=attention_mask, pad_token_id=pad_token_id)
        self._hooks = HookSet()

    def _prepared(self, index: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = (index, hidden.device, hidden.dtype)
        found = self._cast.get(key)
        if found is None:
            rows = self._rows[index]
            found = (self._values[index].to(device=hidden.device, dtype=hidden.dtype),
                     None if rows is None else rows.to(hidden.device))
            self._cast[key] = found
        return found

    def _act(self, layer: Layer, h: torch.Tensor) -> torch.Tensor:
        value, rows = self._prepared(layer.index, h)
        batch, length = h.shape[0], h.shape[1]
        if rows is None:
            n = value.shape[0] if value.dim() == 2 else batch
            if n > batch:
                raise ValueError(f"patch for layer {layer.name}: {n} vectors for a batch of {batch}")
            rows = self.tracker.rows(batch, h.device)[:n]
        if value.dim() == 1:
            value = value.expand(rows.numel(), -1)
        if self.position == "last":
            last = self.tracker.last_index(length, h.device)
            cols = torch.full_like(rows, length - 1) if last is None else last[rows]
        else:
            col = self.position if self.position >= 0 else length + self.position
            if not 0 <= col < length:
                raise ValueError(f"position {self.position} is outside a forward of {length} tokens")
            cols = torch.full_like(rows, col)
        h = h.clone()
        if self.mode == "replace":
            h[rows, cols] = value
        else:
            h[rows, cols] = h[rows, cols] + self.scale * value
        return h

    def _install(self) -> None:
        self._hooks.add(self.layers, self.point, self._act, prepend=True)


def patch(model: torch.nn.Module, values: Mapping[Any, Any], mode: str = "replace", scale: float = 1.0,
          position: int | str = "last", rows: Mapping[Any, Any] | None = None, point: str = "post",
          attention_mask: torch.Tensor | None = None, *, pad_token_id: int | None = None) -> Patch:
    """Context manager replacing (or adding to) ``layer``'s hidden state at one position per row.

    See the module docstring. ``values``: ``{layer: [hidden] or [n, hidden]}``;
    ``rows``: ``{layer: n row indices}`` (default the first ``n`` rows).
    """
    return Patch(model, values, mode=mode, scale=scale, position=position, rows=rows, point=point,
                 attention_mask=attention_mask, pad_token_id=pad_token_id)


__all__ = ["Patch", "patch"]
