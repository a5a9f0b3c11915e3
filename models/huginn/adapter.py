"""latentrun layer adapter for the recurrent-depth Huginn model.

Core blocks are shared across recurrence steps, so one module is visited
``num_steps`` times per forward. Each :class:`~models.layers.Layer` for a core
visit carries an ``active`` predicate that is True only while that (block,
step) runs; the model announces the visit in ``current_visit`` right before
each block call (see ``HuginnForCausalLM._visit``).

The layer list is built for one recurrence depth: ``HuginnAdapter()`` uses the
config's ``mean_recurrence`` (32 for huginn-0125); ``HuginnAdapter(num_steps=n)``
numbers layers for runs with ``num_steps=n``. Matching is by alias, so with
any depth the prelude and coda layers fire, a core layer fires at its own
step, and core layers of steps the run does not reach simply never fire. Only
the *flat indices* of the coda depend on the depth: address the coda by name
(``"coda.0"``) or alias (``("coda", 0)``) when mixing depths.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from models.layers import AdapterError, Layer

from .configuration import HUGINN_MODEL_TYPE
from .numbering import HuginnNumbering


def numbering_for(model: Any, num_steps: int | None = None) -> HuginnNumbering:
    """Flat numbering of ``model`` for runs with ``num_steps`` (default: config.mean_recurrence)."""
    c = model.config
    steps = int(c.mean_recurrence if num_steps is None else num_steps)
    return HuginnNumbering(c.n_layers_in_prelude, c.n_layers_in_recurrent_block, c.n_layers_in_coda, steps)


def _visit_probe(model: Any, alias: tuple) -> Callable[[], bool]:
    """``active`` for one visit: compares the model's announced visit with ``alias``."""

    def active() -> bool:
        return getattr(model, "current_visit", None) == alias

    return active


class HuginnAdapter:
    """The :class:`models.layers.ModelAdapter` for ``huginn_raven`` models built by this package."""

    name = "huginn"

    def __init__(self, num_steps: int | None = None) -> None:
        self.num_steps = num_steps

    def __repr__(self) -> str:
        return f"<HuginnAdapter num_steps={self.num_steps}>"

    def matches(self, model: Any) -> bool:
        config = getattr(model, "config", None)
        if getattr(config, "model_type", None) != HUGINN_MODEL_TYPE:
            return False
        transformer = getattr(model, "transformer", None)
        return transformer is not None and "core_block" in transformer

    def _require_tracking(self, model: Any) -> None:
        if not hasattr(model, "current_visit"):
            raise AdapterError(
                f"{type(model).__name__} does not announce which recurrence step runs, so hooks on its shared "
                "core blocks cannot be placed; load it with latentrun's implementation "
                "(import models.huginn; from_pretrained(..., trust_remote_code=False))"
            )

    def embedding(self, model: Any) -> torch.nn.Module:
        """The module whose output is ``embed``: the sqrt(n_embd)-scaled token embedding."""
        self._require_tracking(model)
        return model.embedding_scale

    def final_norm(self, model: Any) -> torch.nn.Module | None:
        """``ln_f``. Note: the published model also applies it to the last core output before the coda."""
        return model.transformer["ln_f"]

    def layers(self, model: Any) -> list[Layer]:
        self._require_tracking(model)
        numbering = numbering_for(model, self.num_steps)
        t = model.transformer
        out: list[Layer] = []
        for index in range(numbering.num_layers):
            alias = numbering.alias(index)
            if alias[0] == "prelude":
                block = t["prelude"][alias[1]]
            elif alias[0] == "core":
                block = t["core_block"][alias[1]]
            else:
                block = t["coda"][alias[1]]
            out.append(
                Layer(
                    index=index,
                    name=numbering.name(index),
                    block=block,
                    attention=block.attn,
                    mlp=block.mlp,
                    alias=alias,
                    active=_visit_probe(model, alias),
                )
            )
        return out
