"""Resume: killed sub-jobs leave no partial output, reruns skip completed work."""

from __future__ import annotations

import json
import os
import signal
import unittest

from runner.atomic import PARTIAL_SUFFIX
from tests.runner.cli import TempWorkspace, start_cli, wait_for


class ResumeTest(TempWorkspace, unittest.TestCase):
    def calls(self) -> list[str]:
        return (self.ws / "experiments/fixture/calls.log").read_text().splitlines()

    def test_rerun_skips_completed_and_force_reruns(self):
        self.assertEqual(self.cli("--jobs", "fixture_write").returncode, 0)
        result = self.cli("--jobs", "fixture_write")
        self.assertEqual(result.returncode, 0)
        self.assertIn("skip fixture_write/first", result.stdout)
        self.assertEqual(self.calls(), ["first hello", "second !"])
        self.assertEqual(self.cli("--jobs", "fixture_write", "--force").returncode, 0)
        self.assertEqual(self.calls(), ["first hello", "second !"] * 2)

    def test_changing_a_param_reruns_only_the_affected_subjob(self):
        self.assertEqual(self.cli("--jobs", "fixture_write").returncode, 0)
        self.assertEqual(self.cli("--jobs", "fixture_write", "--set", "suffix=?").returncode, 0)
        self.assertEqual(self.calls(), ["first hello", "second !", "second ?"])
        self.assertEqual((self.ws / "experiments/fixture/hello/second-?.txt").read_text(), "hellohello?")
        self.assertTrue((self.ws / "experiments/fixture/hello/second-!.txt").exists(), "other params' output kept")

    def test_deleted_output_is_rebuilt(self):
        self.assertEqual(self.cli("--jobs", "fixture_write").returncode, 0)
        (self.ws / "experiments/fixture/hello/first.txt").unlink()
        self.assertEqual(self.cli("--jobs", "fixture_write").returncode, 0)
        self.assertEqual(self.calls(), ["first hello", "second !", "first hello"])

    def kill_worker_when_started(self, *args: str) -> str:
        """Run the CLI, SIGKILL its worker once the sub-job signals it started; return the CLI output."""
        process = start_cli([*args, "--workspace_path", str(self.ws)])
        started = self.ws / "experiments/fixture/started"
        try:
            wait_for(started)
        except AssertionError:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(process.communicate()[0]) from None
        os.kill(int(started.read_text()), signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1, output)
        started.unlink()
        return output

    def test_sigkilled_subjob_leaves_no_partial_output_and_resumes(self):
        output = self.kill_worker_when_started("--jobs", "fixture_slow")
        self.assertIn("worker exited with code -9", output)
        target = self.ws / "experiments/fixture/slow.txt"
        self.assertFalse(target.exists())
        manifest = json.loads(next((self.ws / "experiments/runs").glob("fixture_slow-*/manifest.json")).read_text())
        self.assertEqual(manifest["subjobs"]["slow"]["status"], "failed")

        (self.ws / "experiments/fixture/release").touch()
        self.assertEqual(self.cli("--jobs", "fixture_slow").returncode, 0)
        self.assertEqual(target.read_text(), "partial-complete")
        leftovers = [p.name for p in target.parent.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
        self.assertEqual(leftovers, [])

    def test_checkpointing_subjob_resumes_from_its_checkpoint(self):
        self.kill_worker_when_started("--jobs", "fixture_checkpoint")
        (self.ws / "experiments/fixture/release").touch()
        self.assertEqual(self.cli("--jobs", "fixture_checkpoint").returncode, 0)
        processed = (self.ws / "experiments/fixture/counted-5.txt").read_text()
        self.assertEqual(processed, repr({"1": [0, 1], "2": [2, 3, 4]}))
        self.assertFalse((self.ws / "experiments/checkpoints/fixture_checkpoint").exists()
                         and any((self.ws / "experiments/checkpoints/fixture_checkpoint").iterdir()),
                         "checkpoint cleared after completion")

    def test_a_second_runner_on_the_same_run_is_refused(self):
        process = start_cli(["--jobs", "fixture_slow", "--workspace_path", str(self.ws)])
        try:
            wait_for(self.ws / "experiments/fixture/started")
            second = self.cli("--jobs", "fixture_slow")
            self.assertEqual(second.returncode, 1, second.stdout)
            self.assertIn("is already being run by pid", second.stdout)
        finally:
            (self.ws / "experiments/fixture/release").touch()
            output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 0, output)
        manifest = json.loads(next((self.ws / "experiments/runs").glob("fixture_slow-*/manifest.json")).read_text())
        self.assertEqual(manifest["status"], "completed")

    def test_ctrl_c_interrupts_cleanly(self):
        process = start_cli(["--jobs", "fixture_slow", "fixture_write", "--workspace_path", str(self.ws)])
        wait_for(self.ws / "experiments/fixture/started")
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 130, output)
        self.assertFalse((self.ws / "experiments/fixture/slow.txt").exists())
        self.assertFalse((self.ws / "experiments/fixture/hello").exists(), "later jobs do not start")
        leftovers = [p.name for p in (self.ws / "experiments/fixture").iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
        self.assertEqual(leftovers, [])


if __name__ == "__main__":
    unittest.main()
