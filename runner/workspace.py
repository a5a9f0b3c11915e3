"""The workspace: where models, data sets and experiment outputs live.

Layout (the seed's, kept)::

    W/transformers/<model>/         model weights + tokenizer (safetensors)
    W/datasets/<owner>/<name>/      data sets
    W/experiments/                  every artifact latentrun writes
    W/experiments/runs/<run-id>/    one manifest per run
    W/latentrun.toml                optional: model-name mapping and defaults

``latentrun.toml``::

    [models]                 # the seed's model names -> folders under transformers/
    huginn-0125 = "tiny-huginn-0125"

    [defaults]               # for every job that has the param
    device_map = "cpu"

    [jobs.save_hidden_states]  # for one job (wins over [defaults])
    batch_size = 4
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "latentrun.toml"


class WorkspaceError(ValueError):
    """The workspace or its config cannot be used; the message says how to fix it."""


@dataclass
class Workspace:
    root: Path
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        """Open a workspace folder; it must exist, its config must parse."""
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise WorkspaceError(f"workspace {path} does not exist (create it or pass --workspace_path)")
        config: dict[str, Any] = {}
        config_file = path / CONFIG_NAME
        if config_file.exists():
            try:
                config = tomllib.loads(config_file.read_text())
            except tomllib.TOMLDecodeError as err:
                raise WorkspaceError(f"{config_file}: {err}") from None
        return cls(root=path, config=config)

    # -- paths -------------------------------------------------------------
    @property
    def experiments(self) -> Path:
        return self.root / "experiments"

    @property
    def runs(self) -> Path:
        return self.experiments / "runs"

    def model_name(self, name: str) -> str:
        """The folder under ``transformers/`` that holds the model the seed calls ``name``."""
        return str(self.config.get("models", {}).get(name, name))

    def model_dir(self, name: str) -> Path:
        mapped = Path(self.model_name(name)).expanduser()
        return mapped if mapped.is_absolute() else self.root / "transformers" / mapped

    def dataset_dir(self, owner_name: str) -> Path:
        return self.root / "datasets" / owner_name

    def path(self, relative: str) -> Path:
        """A workspace-relative path; ``transformers/<name>`` goes through the model mapping."""
        parts = Path(relative).parts
        if len(parts) >= 2 and parts[0] == "transformers":
            return self.model_dir(parts[1]).joinpath(*parts[2:])
        return self.root / relative

    # -- defaults ----------------------------------------------------------
    def defaults_for(self, job_name: str) -> dict[str, Any]:
        """Workspace defaults for one job: ``[defaults]`` overlaid with ``[jobs.<name>]``."""
        merged = dict(self.config.get("defaults", {}))
        merged.update(self.config.get("jobs", {}).get(job_name, {}))
        return merged


def model_in_hf_cache(name: str) -> bool:
    """Whether ``owner/name`` is in the local Hugging Face cache (offline check)."""
    if "/" not in name:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id=name, filename="config.json")
    return isinstance(found, str)
