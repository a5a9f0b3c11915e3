"""Built-in plugin ``save_hidden_states``: every layer's residual stream for every prompt.

``embed`` and every layer of DESIGN.md's numbering (Huginn: every block of
every recurrence step, flat indices) are reduced in the hook to the last
prompt token (``FIRST_ANSWER_TOKEN``) or the mean over non-padding tokens
(``ALL_TOKENS``) and streamed to sharded safetensors with a JSON sidecar::

    experiments/hidden_states/<model>/<dataset>/<mode>[@variant]/hidden_states.json, shard-*.safetensors

Jobs (presets of one parameterised job, with the seed's names):
``save_hidden_states`` and ``mmlu_pro_save_hidden_states`` (huginn-0125),
``save_hidden_states_model_name_Meta-Llama-3-8B``. Open the output with
:func:`open_hidden_states`. See docs/plugins/save_hidden_states.md.
"""

from __future__ import annotations

from typing import Any

from plugins.common.hidden_states import HiddenStates, extraction_params, extraction_subjob, open_hidden_states
from runner.hookspecs import hookimpl
from runner.jobs import DeviceMap, Job, SubJob

__all__ = ["HiddenStates", "open_hidden_states", "latentrun_jobs"]


def build_subjobs(params: dict[str, Any]) -> list[SubJob]:
    return [extraction_subjob(params)]


def _job(name: str, model: str) -> Job:
    return Job(name=name, description=f"Hidden states of every layer of {model} for every prompt (sharded "
                                      "safetensors + JSON sidecar)",
               params=dict(extraction_params(model=model)), subjobs=build_subjobs, device_map=DeviceMap("auto"),
               inputs=["transformers/{model}"])


@hookimpl
def latentrun_jobs() -> list[Job]:
    return [_job("save_hidden_states", "huginn-0125"),
            _job("save_hidden_states_model_name_Meta-Llama-3-8B", "Meta-Llama-3-8B"),
            _job("mmlu_pro_save_hidden_states", "huginn-0125")]
