"""Clean-room Huginn-0125 ("raven") recurrent-depth model for latentrun.

Importing this package registers ``model_type="huginn_raven"`` with
transformers' ``AutoConfig``, ``AutoModel`` and ``AutoModelForCausalLM``, so a
downloaded huginn-0125 directory loads with ``trust_remote_code=False`` even
though its ``config.json`` has an ``auto_map`` pointing at remote code.
See docs/huginn.md.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration import HUGINN_MODEL_TYPE, HuginnConfig, RavenConfig
from .modeling import HuginnCache, HuginnCausalLMOutput, HuginnForCausalLM, RavenForCausalLM
from .numbering import PUBLISHED, HuginnNumbering, block_step_to_index, index_to_block_step


def register() -> None:
    """Register the classes with the transformers Auto factories (idempotent)."""
    AutoConfig.register(HUGINN_MODEL_TYPE, HuginnConfig, exist_ok=True)
    AutoModel.register(HuginnConfig, HuginnForCausalLM, exist_ok=True)
    AutoModelForCausalLM.register(HuginnConfig, HuginnForCausalLM, exist_ok=True)


register()

__all__ = [
    "HUGINN_MODEL_TYPE",
    "PUBLISHED",
    "HuginnCache",
    "HuginnCausalLMOutput",
    "HuginnConfig",
    "HuginnForCausalLM",
    "HuginnNumbering",
    "RavenConfig",
    "RavenForCausalLM",
    "block_step_to_index",
    "index_to_block_step",
    "register",
]
