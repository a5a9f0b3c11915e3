"""Where a model's modules would go, computed on the meta device (no weights read).

``--dry-run`` calls this in a child process (the runner never imports
torch) so a user sees the placement of Llama-3-8B or huginn-0125 over their
GPUs before a job loads anything::

    python -m models.placement W/transformers/Meta-Llama-3-8B \
        --device-map auto --max-memory '{"0": "10GiB", "1": "10GiB", "cpu": "64GiB"}'
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any


def infer_placement(model_dir: str | Path, device_map: Any = "auto", max_memory: dict[str, str] | None = None,
                    dtype: str = "bfloat16") -> dict[str, Any]:
    """Module -> device for ``device_map`` ("auto", "balanced", or an explicit mapping)."""
    import torch
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import get_balanced_memory
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        import models.huginn  # noqa: F401 - registers the huginn_raven model type
    except ImportError:
        pass
    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    torch_dtype = getattr(torch, dtype) if dtype != "auto" else torch.bfloat16
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.tie_weights()  # tied embeddings count once, as when the real weights are loaded
    if isinstance(device_map, dict):
        return dict(device_map)
    memory = {_device_key(k): v for k, v in max_memory.items()} if max_memory else None
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    # "Device 0 is not available": we may be planning for another machine.
    quiet = logging.getLogger("accelerate.utils.modeling")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if device_map == "balanced" and memory:
                memory = get_balanced_memory(model, max_memory=memory, no_split_module_classes=no_split,
                                             dtype=torch_dtype)
            return infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split,
                                         dtype=torch_dtype)
    finally:
        quiet.setLevel(level)


def _device_key(key: str | int) -> str | int:
    return int(key) if isinstance(key, str) and key.isdigit() else key


def summarize(placement: dict[str, Any]) -> dict[str, list[str]]:
    """Device -> module names, with runs of numbered blocks folded (``model.layers.0-15``)."""
    by_device: dict[str, list[str]] = {}
    for module, device in placement.items():
        names = by_device.setdefault(str(device), [])
        match = re.fullmatch(r"(.*\.)(\d+)", module)
        if match and names:
            previous = re.fullmatch(rf"{re.escape(match[1])}(\d+)(?:-(\d+))?", names[-1])
            if previous and int(previous[2] or previous[1]) + 1 == int(match[2]):
                names[-1] = f"{match[1]}{previous[1]}-{match[2]}"
                continue
        names.append(module)
    return by_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--device-map", default="auto", help='"auto", "balanced" or a JSON mapping')
    parser.add_argument("--max-memory", default=None, help='JSON, e.g. {"0": "10GiB", "cpu": "64GiB"}')
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args(argv)
    device_map = json.loads(args.device_map) if args.device_map.startswith("{") else args.device_map
    max_memory = json.loads(args.max_memory) if args.max_memory else None
    placement = infer_placement(args.model_dir, device_map, max_memory, args.dtype)
    json.dump({"placement": {k: str(v) for k, v in placement.items()}, "summary": summarize(placement)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
