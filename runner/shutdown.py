"""Built-in plugin: ``--shutdown_after_experiment`` (the seed's cloud-GPU habit).

Runs the shutdown command once, after every selected job ran. The command
comes from ``--shutdown_command`` or ``LATENTRUN_SHUTDOWN_COMMAND`` (default
``shutdown -h now``), so tests and careful users can make it harmless.
Disable with ``-p no:shutdown``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Any

from runner.hookspecs import hookimpl

DEFAULT_COMMAND = "shutdown -h now"


@hookimpl
def latentrun_session_finish(runs: list, options: dict[str, Any]) -> None:
    if not options.get("shutdown_after_experiment"):
        return
    command = options.get("shutdown_command") or os.environ.get("LATENTRUN_SHUTDOWN_COMMAND") or DEFAULT_COMMAND
    print(f"--shutdown_after_experiment: running {command!r}", flush=True)
    sys.stdout.flush()
    subprocess.run(shlex.split(command), check=False)
