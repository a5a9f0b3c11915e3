"""Everything that touches a torch model.

``models.loading`` (load_model), ``models.layers`` (the one layer numbering),
``models.hooks`` (capture, steering, accumulators), ``models.scoring``,
``models.training`` and ``models.huginn``. Import the submodule you need;
the names below are re-exported lazily so ``import models`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load_model": "models.loading",
    "get_layers": "models.layers", "get_adapter": "models.layers", "resolve_layer": "models.layers",
    "Layer": "models.layers",
    "capture": "models.capture", "capture_grads": "models.capture",
    "steer": "models.steering",
    "Accumulator": "models.accumulators",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
