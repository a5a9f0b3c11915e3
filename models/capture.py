"""Capture the residual stream (or its gradient) at chosen layers.

The reduction runs inside the hook, so all-layer last-token capture keeps
``layers x batch x hidden`` numbers, never ``layers x batch x seq x hidden``::

    with capture(model, "all", reduction="last") as cap:
        model(**batch)
    cap.values[3]            # Tensor[batch, hidden]: output of block 3 at the last real token
    cap["embed"]             # only if "embed" was among the layers

Reductions: ``"last"`` (last real token, left or right padding), ``"mean"``
(over real tokens), ``"all"`` (``[batch, seq, hidden]``), or a list of
positions (absolute columns, negative from the end: ``[batch, n, hidden]``),
or a callable applied to the ``[batch, seq, hidden]`` tensor (e.g. a
projection ``lambda t: t @ U.T`` that keeps ``[batch, seq, k]``).
Real tokens come from the forward's own ``attention_mask``, else the one
given here, else the pad token id (right padding); see :class:`models.hooks.InputTracker`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from models.hooks import EMBED, HookContext, HookSet, InputTracker, normalize_point, select_layers
from models.layers import Layer, get_adapter, get_layers, resolve_layer


def _check_reduction(reduction: Any) -> Any:
    if callable(reduction):
        return reduction
    if isinstance(reduction, str):
        if reduction not in ("last", "mean", "all"):
            raise ValueError(f"reduction must be 'last', 'mean', 'all' or a list of positions, not {reduction!r}")
        return reduction
    if isinstance(reduction, int):
        return [reduction]
    try:
        positions = [int(p) for p in reduction]
    except TypeError:
        raise ValueError(f"reduction must be 'last', 'mean', 'all' or a list of positions, not {reduction!r}") from None
    if not positions:
        raise ValueError("reduction: the list of positions is empty")
    return positions


def make_reducer(reduction: Any, tracker: InputTracker, hidden: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function reducing a ``[batch, seq, hidden]`` tensor shaped like ``hidden``.

    Positions are bound now (from the current forward), so the function can
    be applied later, e.g. to the gradient during the backward pass.
    """
    batch, length = hidden.shape[0], hidden.shape[1]
    device = hidden.device
    if reduction == "last":
        last = tracker.last_index(length, device)
        if last is None:
            return lambda t: t[:, -1]
        rows = tracker.rows(batch, device)
        return lambda t: t[rows, last]
    if reduction == "mean":
        real = tracker.real_mask(length, device)
        if real is None:
            return lambda t: t.mean(dim=1)
        weight = real.unsqueeze(-1)
        count = weight.sum(dim=1).clamp_min(1)
        return lambda t: (t * weight.to(t.dtype)).sum(dim=1) / count.to(t.dtype)
    if callable(reduction):
        return reduction
    if reduction == "all":
        return lambda t: t
    index = torch.tensor(reduction, device=device)
    return lambda t: t.index_select(1, index % t.shape[1])


class _Base(HookContext):
    """Shared setup of :class:`Capture` and :class:`GradCapture`."""

    def __init__(self, model: torch.nn.Module, layers: Any = None, point: str = "post", reduction: Any = "last",
                 attention_mask: torch.Tensor | None = None, device: Any = None, dtype: torch.dtype | None = None,
                 pad_token_id: int | None = None) -> None:
        self.model = model
        self.point = normalize_point(point)
        if self.point == EMBED:
            layers, self.point = [EMBED], "post"
        self.reduction = _check_reduction(reduction)
        self.all_layers: list[Layer] = get_layers(model)
        self.selected = select_layers(model, layers, self.all_layers, allow_embed=True)
        self.layers: list[Layer] = [s for s in self.selected if isinstance(s, Layer)]
        self.keys: list[int | str] = [EMBED if s == EMBED else s.index for s in self.selected]
        self.device = device
        self.dtype = dtype
        self.values: dict[int | str, torch.Tensor] = {}
        self.tracker = InputTracker(model, attention_mask=attention_mask, pad_token_id=pad_token_id)
        self._hooks = HookSet()

    def _finish(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device is not None or self.dtype is not None:
            tensor = tensor.to(device=self.device, dtype=self.dtype, non_blocking=True)
        return tensor

    # -- reading -------------------------------------------------------------
    def _key(self, key: Any) -> int | str:
        if isinstance(key, str) and key.lower() in ("embed", "hook_embed", "embedding"):
            return EMBED
        return resolve_layer(self.model, key, self.all_layers).index

    def __getitem__(self, key: Any) -> torch.Tensor:
        """The value of a layer by index, name, alias, or ``"embed"``."""
        resolved = self._key(key)
        if resolved not in self.values:
            raise KeyError(f"nothing captured for layer {key!r} (captured: {sorted(map(str, self.values))})")
        return self.values[resolved]

    def stack(self) -> torch.Tensor:
        """All captured values in the order the layers were asked: ``[n_layers, ...]``."""
        return torch.stack([self.values[k] for k in self.keys])

    def clear(self) -> None:
        self.values.clear()


class Capture(_Base):
    """Records reduced activations of the chosen layers on every forward.

    ``values`` holds the latest forward's; with ``history=True`` every
    forward's values are also appended to ``history[key]`` (e.g. each step
    of ``generate``).
    """

    def __init__(self, *args: Any, history: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: dict[int | str, list[torch.Tensor]] | None = {} if history else None

    def _store(self, key: int | str, hidden: torch.Tensor) -> None:
        hidden = hidden.detach()
        value = self._finish(make_reducer(self.reduction, self.tracker, hidden)(hidden))
        self.values[key] = value
        if self.history is not None:
            self.history.setdefault(key, []).append(value)

    def _install(self) -> None:
        if self.layers:
            self._hooks.add(self.layers, self.point, lambda layer, h: self._store(layer.index, h))
        if EMBED in self.keys:
            self._hooks.add([self.all_layers[0]], "pre", lambda layer, h: self._store(EMBED, h))


class GradCapture(_Base):
    """Records the gradient of the loss w.r.t. the chosen layers' outputs.

    One backward pass fills every layer: a tensor hook on each captured
    output reduces its gradient with the positions of its own forward. If
    no parameter requires grad, the embedding output is made to require it
    so the gradients still flow. ``values`` holds the latest backward's.
    """

    def _watch(self, key: int | str, hidden: torch.Tensor) -> None:
        if not hidden.requires_grad:
            return
        reduce = make_reducer(self.reduction, self.tracker, hidden)

        def on_grad(grad: torch.Tensor) -> None:
            self.values[key] = self._finish(reduce(grad.detach()))

        hidden.register_hook(on_grad)

    def _install(self) -> None:
        def require_grad(module: Any, args: Any, output: Any) -> Any:
            if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and not output.requires_grad \
                    and output.is_floating_point():
                return output.detach().requires_grad_(True)
            return None

        self._hooks.add_module_hook(get_adapter(self.model).embedding(self.model), require_grad)
        if self.layers:
            self._hooks.add(self.layers, self.point, lambda layer, h: self._watch(layer.index, h))
        if EMBED in self.keys:
            self._hooks.add([self.all_layers[0]], "pre", lambda layer, h: self._watch(EMBED, h))


def capture(model: torch.nn.Module, layers: Any = None, point: str = "post", reduction: Any = "last",
            attention_mask: torch.Tensor | None = None, *, device: Any = None, dtype: torch.dtype | None = None,
            pad_token_id: int | None = None, history: bool = False) -> Capture:
    """Context manager recording the residual stream at ``layers`` (None/"all" = every layer).

    ``layers`` may mix indices, names, aliases and ``"embed"``; ``point`` is
    post/pre/attn/mlp (TransformerLens names accepted). Values stay on the
    model's device unless ``device`` is given (``"cpu"`` copies once per layer).
    """
    return Capture(model, layers, point, reduction, attention_mask, device=device, dtype=dtype,
                   pad_token_id=pad_token_id, history=history)


def capture_grads(model: torch.nn.Module, layers: Any = None, point: str = "post", reduction: Any = "last",
                  attention_mask: torch.Tensor | None = None, *, device: Any = None, dtype: torch.dtype | None = None,
                  pad_token_id: int | None = None) -> GradCapture:
    """Context manager recording d(loss)/d(activation) at ``layers`` during ``loss.backward()``.

    Run the forward and the backward inside the ``with`` block::

        with capture_grads(model, [2, 5], reduction="last") as grads:
            model(**batch, labels=batch["input_ids"]).loss.backward()
        grads.values[5]   # Tensor[batch, hidden]
    """
    return GradCapture(model, layers, point, reduction, attention_mask, device=device, dtype=dtype,
                       pad_token_id=pad_token_id)
