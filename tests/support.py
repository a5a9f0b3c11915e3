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
