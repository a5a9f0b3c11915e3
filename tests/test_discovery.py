"""The test suite itself: discovery finds every test, and CI fails when none ran."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from tests.support import REPO_ROOT


class DiscoveryTest(unittest.TestCase):
    def test_every_folder_with_tests_is_a_package(self):
        tests = REPO_ROOT / "tests"
        for test_file in tests.rglob("test_*.py"):
            for folder in [test_file.parent, *test_file.parent.parents]:
                if folder == tests.parent:
                    break
                self.assertTrue((folder / "__init__.py").exists(), f"{folder} needs an __init__.py")

    def test_ci_fails_when_zero_tests_ran(self):
        check = REPO_ROOT / ".ci" / "check_test_count.py"
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "log"
            log.write_text("\n----\nRan 0 tests in 0.000s\n\nNO TESTS RAN\n")
            self.assertEqual(subprocess.run([sys.executable, check, log], capture_output=True).returncode, 1)
            log.write_text("...\nRan 12 tests in 1.0s\n\nOK\n")
            self.assertEqual(subprocess.run([sys.executable, check, log], capture_output=True).returncode, 0)


if __name__ == "__main__":
    unittest.main()
