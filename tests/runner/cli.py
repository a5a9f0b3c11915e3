"""Run the latentrun CLI in a subprocess with fixture plugin distributions on sys.path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from tests.support import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures"
MAIN = REPO_ROOT / "runner" / "main.py"


def cli_env(sites: Sequence[str] = ("site_good",), **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTRUN_")}
    paths = [str(FIXTURES / site) for site in sites] + [str(REPO_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def run_cli(args: Sequence[str], sites: Sequence[str] = ("site_good",), timeout: float = 120,
            **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MAIN), *args], env=cli_env(sites, **extra_env),
                          capture_output=True, text=True, timeout=timeout)


def _default_sigint() -> None:
    # a suite started in the background (`cmd &`) inherits SIGINT ignored, and so would the CLI: Python then
    # never raises KeyboardInterrupt. Give the CLI the default handler, as from a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(args: Sequence[str], sites: Sequence[str] = ("site_good",)) -> subprocess.Popen:
    """Start the CLI in its own session (so a test can signal its whole process group), Ctrl-C enabled."""
    return subprocess.Popen([sys.executable, str(MAIN), *args], env=cli_env(sites), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=_default_sigint)


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def list_json(sites: Sequence[str] = ("site_good",), *flags: str, **extra_env: str) -> tuple[int, dict, str]:
    result = run_cli(["--list", "--json", *flags], sites, **extra_env)
    return result.returncode, json.loads(result.stdout), result.stderr


class TempWorkspace:
    """A fresh workspace folder per test."""

    def setUp(self) -> None:  # noqa: N802 - unittest naming
        self._tmp = tempfile.TemporaryDirectory()
        self.ws = Path(self._tmp.name) / "ws"
        self.ws.mkdir()

    def tearDown(self) -> None:  # noqa: N802
        self._tmp.cleanup()

    def cli(self, *args: str, sites: Sequence[str] = ("site_good",), **env: str) -> subprocess.CompletedProcess:
        return run_cli([*args, "--workspace_path", str(self.ws)], sites, **env)
