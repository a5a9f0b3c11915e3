"""Plugin discovery through real entry points (fixture distributions on sys.path)."""

from __future__ import annotations

import json
import subprocess
import sys
import unittest

from tests.runner.cli import TempWorkspace, cli_env, list_json, run_cli
from tests.support import REPO_ROOT


class ThirdPartyPluginTest(TempWorkspace, unittest.TestCase):
    def test_listed_with_distribution_and_version_and_runs(self):
        code, listing, _ = list_json()
        self.assertEqual(code, 0)
        fixture = next(p for p in listing["plugins"] if p["name"] == "fixture")
        self.assertEqual((fixture["distribution"], fixture["version"], fixture["status"]),
                         ("latentrun-fixture-plugin", "1.0", "loaded"))
        jobs = {j["name"]: j for j in listing["jobs"]}
        self.assertEqual(jobs["fixture_write"]["subjobs"], ["first", "second"])
        self.assertEqual(jobs["fixture_write"]["plugin"], "fixture")

        result = self.cli("--jobs", "fixture_write", "--set", "text=abc")
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        self.assertEqual((self.ws / "experiments/fixture/abc/second-!.txt").read_text(), "abcabc!")

    def test_group_job_runs_its_members(self):
        result = self.cli("--jobs", "fixture_group", "--set", "block_at=-1", "--inline")
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        self.assertTrue((self.ws / "experiments/fixture/hello/second-!.txt").exists())
        self.assertTrue((self.ws / "experiments/fixture/counted-5.txt").exists())


class BrokenAndDuplicatePluginTest(TempWorkspace, unittest.TestCase):
    def test_broken_plugin_reported_others_keep_working(self):
        code, listing, stderr = list_json(("site_good", "site_broken"))
        self.assertEqual(code, 0)
        broken = next(p for p in listing["plugins"] if p["name"] == "broken")
        self.assertEqual(broken["status"], "failed")
        self.assertIn("latentrun_dependency_that_does_not_exist", broken["error"])
        self.assertIn("plugin 'broken'", stderr)
        self.assertIn("fixture_write", [j["name"] for j in listing["jobs"]])
        result = self.cli("--jobs", "fixture_write", sites=("site_good", "site_broken"))
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_duplicate_job_name_names_both_plugins(self):
        result = run_cli(["--list"], ("site_good", "site_dupe"))
        self.assertEqual(result.returncode, 2)
        self.assertIn("'fixture_write'", result.stderr)
        self.assertIn("'fixture'", result.stderr)
        self.assertIn("'dupe'", result.stderr)
        result = self.cli("--jobs", "fixture_write", sites=("site_good", "site_dupe"))
        self.assertEqual(result.returncode, 2)

    def test_disable_plugin_by_flag_and_environment(self):
        code, listing, _ = list_json(("site_good", "site_dupe"), "-p", "no:dupe")
        self.assertEqual(code, 0)
        self.assertEqual(next(p for p in listing["plugins"] if p["name"] == "dupe")["status"], "disabled")
        code, listing, _ = list_json(("site_good", "site_dupe"), LATENTRUN_DISABLE_PLUGINS="dupe")
        self.assertEqual(code, 0)
        result = self.cli("--jobs", "fixture_write", "-p", "no:dupe", sites=("site_good", "site_dupe"))
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_trace_prints_hook_calls(self):
        result = run_cli(["--list", "--trace-plugins"])
        self.assertIn("[trace] latentrun_jobs", result.stderr)


class ListStaysLightTest(unittest.TestCase):
    def test_list_imports_neither_torch_nor_models(self):
        probe = (
            "import sys, io, contextlib\n"
            "from runner.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    code = main(['--list'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'transformers'))\n"
            "print(code, heavy[:5])\n"
        )
        result = subprocess.run([sys.executable, "-c", probe], env=cli_env(()), capture_output=True, text=True,
                                cwd=REPO_ROOT, timeout=60)
        self.assertEqual(result.stdout.strip(), "0 []", result.stderr)

    def test_list_json_is_machine_readable(self):
        code, listing, _ = list_json(())
        self.assertEqual(code, 0)
        self.assertIn("workspace_info", [j["name"] for j in listing["jobs"]])
        json.dumps(listing)


if __name__ == "__main__":
    unittest.main()
