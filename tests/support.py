"""Shared test helpers: the ``slow`` marker and a repo-root path.

Slow end-to-end tests stay in CI; ``LATENTRUN_SKIP_SLOW=1`` skips them
locally while iterating.
"""

from __future__ import annotations

import os
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def slow(test):
    """Mark an end-to-end test that takes more than a few seconds."""
    test.slow = True
    return unittest.skipIf(os.environ.get("LATENTRUN_SKIP_SLOW") == "1", "LATENTRUN_SKIP_SLOW=1")(test)


_saved_threads: list[int] = []


def limit_torch_threads() -> None:
    """``setUpModule`` of modules that run tiny models: one intra-op thread.

    Tiny matrices gain nothing from a thread pool, and on a busy 2-core
    machine its contention makes each forward many times slower.
    """
    import torch

    _saved_threads.append(torch.get_num_threads())
    torch.set_num_threads(1)


def restore_torch_threads() -> None:
    """``tearDownModule`` partner of :func:`limit_torch_threads`."""
    import torch

    if _saved_threads:
        torch.set_num_threads(_saved_threads.pop())
