"""Streaming statistics of captured activations in O(layers x hidden) memory.

An :class:`Accumulator` keeps, per layer, float64 sums (and optionally sums
of squares) overall and per class label, so means, class-conditional means
and per-dimension variances over N prompts need no more memory for N = 10⁶
than for N = 10. Sums merge exactly (up to float64 rounding) across batches,
processes and machines::

    acc = Accumulator(second_moments=True)
    for batch, labels in batches:
        with capture(model, "all", reduction="last") as cap:
            model(**batch)
        acc.update(cap.values, labels)
    acc.mean(5); acc.class_means(5)[1]; acc.variance(5)
    acc.save("stats.safetensors")  # Accumulator.load(...).merge(other)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping

import torch

_DTYPE = torch.float64


def _encode(key: Hashable) -> str:
    """Layer keys and labels as text that round-trips: ``3`` -> ``i:3``, ``"embed"`` -> ``s:embed``."""
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"keys and labels must be int or str, not {type(key).__name__} ({key!r})")
    text = f"i:{key}" if isinstance(key, int) else f"s:{key}"
    if "/" in text:
        raise ValueError(f"key {key!r} must not contain '/'")
    return text


def _decode(text: str) -> int | str:
    kind, _, value = text.partition(":")
    return int(value) if kind == "i" else value


def _labels_list(labels: Any, batch: int) -> list[int | str]:
    if isinstance(labels, torch.Tensor):
        labels = labels.reshape(-1).tolist()
    out = [int(x) if isinstance(x, (int, bool)) or hasattr(x, "__index__") and not isinstance(x, str) else x
           for x in labels]
    if len(out) != batch:
        raise ValueError(f"{len(out)} labels for a batch of {batch}")
    return out


class Accumulator:
    """Counts, sums, class-conditional sums and (optionally) squared sums per layer."""

    def __init__(self, second_moments: bool = False) -> None:
        self.second_moments = second_moments
        self.count = 0
        self.sums: dict[int | str, torch.Tensor] = {}
        self.sq_sums: dict[int | str, torch.Tensor] = {}
        self.class_counts: dict[int | str, int] = {}
        self.class_sums: dict[int | str, dict[int | str, torch.Tensor]] = {}

    # -- updating --------------------------------------------------------------
    def update(self, values: Mapping[Any, torch.Tensor], labels: Any = None) -> Accumulator:
        """Add a batch: ``values[layer]`` is ``[batch, hidden]``; ``labels`` one per row (optional)."""
        batch = None
        for key, tensor in values.items():
            if tensor.dim() != 2:
                raise ValueError(f"layer {key!r}: expected [batch, hidden], got {tuple(tensor.shape)}; "
                                 "capture with reduction='last' or 'mean'")
            if batch is None:
                batch = tensor.shape[0]
            elif tensor.shape[0] != batch:
                raise ValueError(f"layer {key!r} has batch {tensor.shape[0]}, others {batch}")
        if batch is None:
            return self
        label_list = _labels_list(labels, batch) if labels is not None else None
        classes: list[int | str] = list(dict.fromkeys(label_list)) if label_list is not None else []
        onehot = None
        if classes:
            index = {c: i for i, c in enumerate(classes)}
            rows = torch.tensor([index[c] for c in label_list])
            onehot = torch.zeros(len(classes), batch, dtype=_DTYPE)
            onehot[rows, torch.arange(batch)] = 1.0
        for key, tensor in values.items():
            _encode(key)
            x = tensor.detach().to(_DTYPE)
            self._add(self.sums, key, x.sum(dim=0))
            if self.second_moments:
                self._add(self.sq_sums, key, (x * x).sum(dim=0))
            if onehot is not None:
                per_class = onehot.to(x.device) @ x
                for i, label in enumerate(classes):
                    self._add(self.class_sums.setdefault(label, {}), key, per_class[i])
        self.count += batch
        if label_list is not None:
            for label in label_list:
                self.class_counts[label] = self.class_counts.get(label, 0) + 1
        return self

    @staticmethod
    def _add(store: dict, key: Any, value: torch.Tensor) -> None:
        if key in store:
            store[key] += value.to(store[key].device)
        else:
            store[key] = value.clone()

    def merge(self, other: Accumulator) -> Accumulator:
        """Add ``other``'s statistics into this one (in place) and return self."""
        if other.second_moments != self.second_moments and other.count and self.count:
            raise ValueError("cannot merge accumulators with and without second moments")
        self.second_moments = self.second_moments or other.second_moments
        self.count += other.count
        for key, value in other.sums.items():
            self._add(self.sums, key, value)
        for key, value in other.sq_sums.items():
            self._add(self.sq_sums, key, value)
        for label, count in other.class_counts.items():
            self.class_counts[label] = self.class_counts.get(label, 0) + count
        for label, sums in other.class_sums.items():
            mine = self.class_sums.setdefault(label, {})
            for key, value in sums.items():
                self._add(mine, key, value)
        return self

    # -- reading ---------------------------------------------------------------
    @property
    def layers(self) -> list[int | str]:
        return list(self.sums)

    @property
    def classes(self) -> list[int | str]:
        return list(self.class_counts)

    def mean(self, layer: Any = None) -> torch.Tensor | dict[Any, torch.Tensor]:
        """Mean activation of ``layer`` (float64), or of every layer as a dict."""
        if layer is None:
            return {k: self.mean(k) for k in self.sums}
        if not self.count:
            raise ValueError("the accumulator is empty")
        return self.sums[layer] / self.count

    def class_means(self, layer: Any) -> dict[int | str, torch.Tensor]:
        """``{label: mean activation of that class at layer}``."""
        return {label: sums[layer] / self.class_counts[label]
                for label, sums in self.class_sums.items() if layer in sums}

    def variance(self, layer: Any, unbiased: bool = False) -> torch.Tensor:
        """Per-dimension variance at ``layer`` (needs ``second_moments=True``)."""
        if not self.second_moments:
            raise ValueError("variance needs Accumulator(second_moments=True)")
        n = self.count
        mean = self.sums[layer] / n
        var = self.sq_sums[layer] / n - mean * mean
        var = var.clamp_min(0)
        return var * n / (n - 1) if unbiased and n > 1 else var

    def sizes(self) -> int:
        """Total number of stored numbers (for checking memory stays flat)."""
        stores = [self.sums, self.sq_sums, *self.class_sums.values()]
        return sum(t.numel() for store in stores for t in store.values())

    # -- saving ------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat ``{name: tensor}`` on CPU, ready for ``safetensors.torch.save_file``."""
        state: dict[str, torch.Tensor] = {
            "count": torch.tensor([self.count], dtype=torch.int64),
            "second_moments": torch.tensor([int(self.second_moments)], dtype=torch.int64),
        }
        for key, value in self.sums.items():
            state[f"sum/{_encode(key)}"] = value.detach().cpu().contiguous()
        for key, value in self.sq_sums.items():
            state[f"sq_sum/{_encode(key)}"] = value.detach().cpu().contiguous()
        for label, count in self.class_counts.items():
            state[f"class_count/{_encode(label)}"] = torch.tensor([count], dtype=torch.int64)
        for label, sums in self.class_sums.items():
            for key, value in sums.items():
                state[f"class_sum/{_encode(label)}/{_encode(key)}"] = value.detach().cpu().contiguous()
        return state

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> Accumulator:
        acc = cls(second_moments=bool(int(state["second_moments"].reshape(-1)[0])))
        acc.count = int(state["count"].reshape(-1)[0])
        for name, value in state.items():
            parts = name.split("/")
            if parts[0] == "sum":
                acc.sums[_decode(parts[1])] = value.to(_DTYPE).clone()
            elif parts[0] == "sq_sum":
                acc.sq_sums[_decode(parts[1])] = value.to(_DTYPE).clone()
            elif parts[0] == "class_count":
                acc.class_counts[_decode(parts[1])] = int(value.reshape(-1)[0])
            elif parts[0] == "class_sum":
                acc.class_sums.setdefault(_decode(parts[1]), {})[_decode(parts[2])] = value.to(_DTYPE).clone()
        return acc

    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> None:
        """Write the state as safetensors; ``metadata`` values are stored as JSON text."""
        from safetensors.torch import save_file

        meta = {"format": "latentrun.accumulator/1"}
        meta.update({str(k): json.dumps(v) for k, v in (metadata or {}).items()})
        save_file(self.state_dict(), str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> Accumulator:
        from safetensors.torch import load_file

        return cls.from_state_dict(load_file(str(path)))

    @classmethod
    def merged(cls, accumulators: Iterable[Accumulator]) -> Accumulator:
        """One accumulator holding the sum of several (e.g. one per process)."""
        total = cls()
        for acc in accumulators:
            total.merge(acc)
        return total

    def __repr__(self) -> str:
        return (f"Accumulator(count={self.count}, layers={len(self.sums)}, classes={len(self.class_counts)}, "
                f"second_moments={self.second_moments})")
