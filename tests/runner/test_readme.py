"""The README's promises: its plugin works as printed, its commands are what CI runs."""

from __future__ import annotations

import re
import tempfile
import tomllib
import unittest
from pathlib import Path

from tests.runner.cli import run_cli
from tests.support import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def code_block(first_line: str) -> str:
    """The fenced block of the README whose first line is ``first_line``."""
    for block in re.findall(r"```\w*\n(.*?)```", README, flags=re.S):
        if block.startswith(first_line + "\n"):
            return block
    raise AssertionError(f"README has no code block starting with {first_line!r}")


class ReadmePluginTest(unittest.TestCase):
    def test_plugin_from_readme_is_listed_and_runs(self):
        project = tomllib.loads(code_block("# pyproject.toml"))["project"]
        module = code_block("# latentrun_hello.py")
        self.assertLess(len(module.splitlines()) + len(code_block("# pyproject.toml").splitlines()), 32)
        with tempfile.TemporaryDirectory() as tmp:
            site, workspace = Path(tmp) / "site", Path(tmp) / "ws"
            workspace.mkdir()
            dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
            dist.mkdir(parents=True)
            (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                           f"Version: {project['version']}\n")
            points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["latentrun"].items())
            (dist / "entry_points.txt").write_text(f"[latentrun]\n{points}")
            (site / "latentrun_hello.py").write_text(module)

            listing = run_cli(["--list"], sites=(str(site),))
            self.assertEqual(listing.returncode, 0, listing.stderr)
            self.assertIn("latentrun-hello", listing.stdout)
            result = run_cli(["--jobs", "hello", "--set", "greeting=Hi", "--workspace_path", str(workspace)],
                             sites=(str(site),))
            self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
            self.assertEqual((workspace / "experiments/hello/Hi.txt").read_text(), "Hi from ws\n")


class ReadmeCommandsTest(unittest.TestCase):
    def test_ci_runs_the_readme_setup_commands(self):
        setup = code_block("pip install -r requirements.txt && python runner/main.py --jobs "
                           "mmlu_pro_save_candidate_directions --workspace_path workspace.example").splitlines()
        ci = (REPO_ROOT / ".ci" / "run").read_text()
        for command in setup:
            self.assertRegex(ci, rf"(?m)^{re.escape(command)}( |$)")


if __name__ == "__main__":
    unittest.main()
