"""Built-in plugin ``workspace_info``: what a workspace holds.

Lists the models under ``transformers/`` (architecture, parameter count
read from the safetensors headers), the data sets under ``datasets/`` and
the runs under ``experiments/runs/``, prints a table and writes
``experiments/workspace_info/inventory.json``. It loads no model, so it is
the quick check that a workspace is laid out as latentrun expects.
"""

from __future__ import annotations

from runner.hookspecs import hookimpl
from runner.jobs import Job, SubJob

INVENTORY = "experiments/workspace_info/inventory.json"


@hookimpl
def latentrun_jobs() -> list[Job]:
    return [
        Job(
            name="workspace_info",
            description="List the models, data sets and runs a workspace holds",
            subjobs=[SubJob("inventory", "plugins.workspace_info.inventory:write_inventory", writes=[INVENTORY])],
        )
    ]
