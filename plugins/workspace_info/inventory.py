"""The ``workspace_info/inventory`` sub-job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.atomic import write_json
from runner.context import SubJobContext

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def count_parameters(model_dir: Path) -> int | None:
    """Parameter count from safetensors headers (no tensor is loaded)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for path in files:
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():
                count = 1
                for size in handle.get_slice(name).get_shape():
                    count *= size
                total += count
    return total


def describe_model(model_dir: Path) -> dict[str, Any]:
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    weights = sorted(p.name for p in model_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    tokenizer = any((model_dir / n).exists() for n in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    return {
        "name": model_dir.name,
        "model_type": config.get("model_type", "?"),
        "parameters": count_parameters(model_dir),
        "weights": weights,
        "tokenizer": tokenizer,
    }


def describe_datasets(root: Path) -> list[dict[str, Any]]:
    found = []
    for owner in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for entry in sorted(owner.iterdir()):
            files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
            found.append({"name": f"{owner.name}/{entry.name}", "files": len(files),
                          "bytes": sum(p.stat().st_size for p in files)})
    return found


def describe_runs(runs_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for manifest in sorted(runs_dir.glob("*/manifest.json")):
        data = json.loads(manifest.read_text())
        runs.append({"run_id": data.get("run_id"), "job": data.get("job"), "status": data.get("status"),
                     "updated": data.get("updated")})
    return runs


def write_inventory(ctx: SubJobContext) -> None:
    from rich.console import Console
    from rich.table import Table

    ws = ctx.workspace
    models_root = ws.root / "transformers"
    models = [describe_model(p) for p in sorted(models_root.iterdir()) if p.is_dir()] if models_root.is_dir() else []
    inventory = {
        "workspace": str(ws.root),
        "model_mapping": ws.config.get("models", {}),
        "models": models,
        "datasets": describe_datasets(ws.root / "datasets"),
        "runs": describe_runs(ws.runs),
    }
    table = Table(title=f"workspace {ws.root}")
    for column in ("kind", "name", "details"):
        table.add_column(column)
    for model in models:
        params = f"{model['parameters']:,} params" if model["parameters"] else "no safetensors"
        table.add_row("model", model["name"], f"{model['model_type']}, {params}")
    for alias, folder in inventory["model_mapping"].items():
        table.add_row("mapping", alias, f"-> transformers/{folder}")
    for data in inventory["datasets"]:
        table.add_row("dataset", data["name"], f"{data['files']} file(s), {data['bytes']:,} bytes")
    for run in inventory["runs"]:
        table.add_row("run", run["run_id"], f"{run['job']}: {run['status']}")
    Console().print(table)
    write_json(ctx.writes[0], inventory)
    ctx.logger.info("wrote %s", ctx.writes[0])
