"""The directions file: one safetensors per model / data set / mode, plus a JSON sidecar.

Written by ``candidate_directions`` (directions and probes), read by
``steering_per_layer``: the format lives here because plugins share files,
never imports.

Tensor names are ``<kind>.<layer>`` with ``<layer>`` = ``embed`` or the
layer index of DESIGN.md's numbering; every tensor is float32 ``[hidden]``:

==================  ==============================================================
kind                what
==================  ==============================================================
reasoning_mean      mean hidden state of the reasoning prompts
memorizing_mean     mean hidden state of the memorizing prompts
overall_mean        mean over all prompts (``m`` of DESIGN.md's steering formulas)
direction           reasoning_mean − memorizing_mean (probes: the probe's weight
                    vector in activation space), pointing memorizing → reasoning
unit_direction      direction / ‖direction‖
scaled_direction    unit_direction · ‖overall_mean‖ (SCALE_WITH_OVERALL_MAGNITUDE)
==================  ==============================================================

Probe files add ``bias.<layer>`` (shape ``[1]``): the probe's logit for
reasoning is ``direction · h + bias``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

FORMAT = "latentrun.directions/1"
KINDS = ("reasoning_mean", "memorizing_mean", "overall_mean", "direction", "unit_direction", "scaled_direction")


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix(".json")


def _key_text(key: int | str) -> str:
    return str(key)


def _key_value(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def complete(direction: Any, overall_mean: Any) -> dict[str, Any]:
    """``unit_direction`` and ``scaled_direction`` of one layer (float64 in, float64 out)."""
    import torch

    norm = direction.norm()
    unit = direction / norm if float(norm) > 0 else torch.zeros_like(direction)
    return {"unit_direction": unit, "scaled_direction": unit * overall_mean.norm()}


def write_directions(path: str | Path, per_layer: Mapping[int | str, Mapping[str, Any]],
                     layers: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``{layer: {kind: tensor}}`` and the sidecar (both atomically); return the sidecar."""
    import torch
    from safetensors.torch import save_file

    from runner.atomic import atomic_path, write_json

    tensors: dict[str, Any] = {}
    norms: dict[str, list[float]] = {"direction": [], "overall_mean": []}
    for entry in layers:
        key = entry["key"]
        values = per_layer[key]
        for kind, tensor in values.items():
            tensor = tensor.detach().to(torch.float32).cpu()
            tensors[f"{kind}.{_key_text(key)}"] = (tensor.reshape(1) if tensor.dim() == 0 else tensor).contiguous()
        norms["direction"].append(float(values["direction"].norm()))
        norms["overall_mean"].append(float(values["overall_mean"].norm()))
    sidecar = {"format": FORMAT, **meta, "layers": [dict(e) for e in layers], "kinds": sorted(
        {name.split(".", 1)[0] for name in tensors}), "norms": norms}
    header = {"format": FORMAT, "layers": json.dumps([_key_text(e["key"]) for e in layers]),
              "kind": str(meta.get("kind", "")), "model": str(meta.get("model", "")),
              "mode": str(meta.get("mode", ""))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    write_json(sidecar_path(path), sidecar)
    return sidecar


def load_directions(path: str | Path) -> dict[str, Any]:
    """Open a directions file (candidate directions or linear probes) in a notebook.

    Returns ``{"layers": ["embed", 0, 1, ...], "<kind>": {layer: Tensor[hidden]}, ..., "meta": sidecar}``::

        d = load_directions("W/experiments/candidate_directions/huginn-0125/mmlu-pro-3000samples/"
                            "FIRST_ANSWER_TOKEN.safetensors")
        u = d["unit_direction"][66]; m = d["overall_mean"][66]
    """
    from safetensors import safe_open

    path = Path(path)
    out: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
        if header.get("format") != FORMAT:
            raise ValueError(f"{path}: format {header.get('format')!r}, expected {FORMAT!r}")
        layers = [_key_value(k) for k in json.loads(header["layers"])]
        for name in handle.keys():
            kind, _, key = name.partition(".")
            out.setdefault(kind, {})[_key_value(key)] = handle.get_tensor(name)
    out["layers"] = layers
    sidecar = sidecar_path(path)
    out["meta"] = json.loads(sidecar.read_text()) if sidecar.exists() else dict(header)
    return out
