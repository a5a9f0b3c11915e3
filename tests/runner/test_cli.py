"""The command line: errors a user can act on, params, validation, logging, shutdown."""

from __future__ import annotations

import json
import sys
import unittest

from tests.runner.cli import TempWorkspace, run_cli


def dry_plan(case: TempWorkspace, *args: str) -> list[dict]:
    result = case.cli("--dry-run", "--json", *args)
    case.assertEqual(result.returncode, 0, result.stderr)
    return json.loads(result.stdout)


class UsageErrorTest(TempWorkspace, unittest.TestCase):
    def test_unknown_job_exits_2_with_closest_names(self):
        result = self.cli("--jobs", "fixture_writ")
        self.assertEqual(result.returncode, 2)
        self.assertIn("unknown job 'fixture_writ'", result.stderr)
        self.assertIn("fixture_write", result.stderr)

    def test_unknown_set_key(self):
        result = self.cli("--jobs", "fixture_write", "--set", "cont=3")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--set cont", result.stderr)
        self.assertIn("count", result.stderr)

    def test_wrong_type_and_bad_choice(self):
        result = self.cli("--jobs", "fixture_write", "--set", "count=many")
        self.assertEqual(result.returncode, 2)
        self.assertIn("expected int", result.stderr)
        result = self.cli("--jobs", "fixture_write", "--set", "mode=c")
        self.assertEqual(result.returncode, 2)
        self.assertIn("choose one of: a, b", result.stderr)
        result = self.cli("--jobs", "fixture_write", "--set", "count")
        self.assertEqual(result.returncode, 2)

    def test_no_jobs_or_workspace(self):
        self.assertEqual(run_cli([]).returncode, 2)
        self.assertEqual(run_cli(["--jobs", "fixture_write"]).returncode, 2)
        result = run_cli(["--jobs", "fixture_write", "--workspace_path", str(self.ws / "nope")])
        self.assertEqual(result.returncode, 2)
        self.assertIn("does not exist", result.stderr)


class ParamTest(TempWorkspace, unittest.TestCase):
    def test_sweep_expands_to_runs_with_distinct_ids(self):
        plan = dry_plan(self, "--jobs", "fixture_write", "--set", "count=1,2,3", "--set", "scale=0.1,0.2")
        self.assertEqual(len(plan), 6)
        self.assertEqual(len({run["run_id"] for run in plan}), 6)
        self.assertEqual(sorted({run["params"]["count"] for run in plan}), [1, 2, 3])

    def test_precedence_set_over_workspace_over_default(self):
        (self.ws / "latentrun.toml").write_text(
            '[defaults]\ncount = 3\nsuffix = "?"\n\n[jobs.fixture_write]\ntext = "ws"\nsuffix = "#"\n')
        params = dry_plan(self, "--jobs", "fixture_write", "--set", "text=cli")[0]["params"]
        self.assertEqual((params["text"], params["count"], params["suffix"], params["scale"]), ("cli", 3, "#", 0.5))

    def test_workspace_default_of_wrong_type_is_reported(self):
        (self.ws / "latentrun.toml").write_text('[defaults]\ncount = "three"\n')
        result = self.cli("--jobs", "fixture_write")
        self.assertEqual(result.returncode, 2)
        self.assertIn("count='three' should be int", result.stderr)

    def test_dry_run_runs_nothing(self):
        dry_plan(self, "--jobs", "fixture_write")
        self.assertFalse((self.ws / "experiments").exists())


class ValidationTest(TempWorkspace, unittest.TestCase):
    def test_missing_inputs_of_two_jobs_reported_together_nothing_created(self):
        out = self.ws.parent / "logs"
        result = self.cli("--jobs", "fixture_needs_inputs", "fixture_reads_artifact", "--output_path", str(out))
        self.assertEqual(result.returncode, 2)
        self.assertIn("transformers/tiny-llama", result.stderr)
        self.assertIn("datasets/someone/data", result.stderr)
        self.assertIn("experiments/fixture/hello/first.txt", result.stderr)
        self.assertIn("written by: fixture_write (sub-job first)", result.stderr)
        self.assertFalse((self.ws / "experiments").exists())
        self.assertFalse(out.exists())

    def test_model_mapping_is_followed(self):
        (self.ws / "latentrun.toml").write_text('[models]\ntiny-llama = "elsewhere"\n')
        (self.ws / "transformers/elsewhere").mkdir(parents=True)
        (self.ws / "datasets/someone/data").mkdir(parents=True)
        dry_plan(self, "--jobs", "fixture_needs_inputs")

    def test_artifact_of_an_earlier_selected_job_counts_as_produced(self):
        plan = dry_plan(self, "--jobs", "fixture_write", "fixture_reads_artifact")
        self.assertEqual([r["job"] for r in plan], ["fixture_write", "fixture_reads_artifact"])

    def test_device_map_checked_against_machine(self):
        result = self.cli("--jobs", "fixture_gpu", "--dry-run")
        self.assertEqual(result.returncode, 2)
        self.assertIn("needs 1 GPU(s), this machine has 0", result.stderr)
        plan = dry_plan(self, "--jobs", "fixture_gpu", "--set", "device_map=cpu")
        self.assertEqual(plan[0]["device_map"]["placement"], "cpu")


class RunTest(TempWorkspace, unittest.TestCase):
    def test_failed_job_gives_exit_1_and_other_jobs_still_run(self):
        result = self.cli("--jobs", "fixture_fail", "fixture_write")
        self.assertEqual(result.returncode, 1)
        self.assertIn("this sub-job always fails", result.stdout)
        self.assertTrue((self.ws / "experiments/fixture/hello/second-!.txt").exists())
        manifests = {p.parent.name.split("-")[0]: json.loads(p.read_text())
                     for p in (self.ws / "experiments/runs").glob("*/manifest.json")}
        failed = next(m for m in manifests.values() if m["job"] == "fixture_fail")
        self.assertEqual(failed["status"], "failed")
        self.assertIn("RuntimeError", failed["subjobs"]["boom"]["error"])

    def test_fail_fast_stops_after_first_failure(self):
        result = self.cli("--jobs", "fixture_fail", "fixture_write", "--fail-fast")
        self.assertEqual(result.returncode, 1)
        self.assertFalse((self.ws / "experiments/fixture/hello").exists())

    def test_manifest_records_params_versions_and_outputs(self):
        self.assertEqual(self.cli("--jobs", "fixture_write").returncode, 0)
        manifest = json.loads(next((self.ws / "experiments/runs").glob("fixture_write-*/manifest.json")).read_text())
        self.assertEqual(manifest["status"], "completed")
        self.assertEqual(manifest["params"]["text"], "hello")
        self.assertIn("python", manifest["versions"])
        self.assertEqual(manifest["subjobs"]["second"]["outputs"], ["experiments/fixture/hello/second-!.txt"])
        self.assertGreaterEqual(manifest["subjobs"]["first"]["seconds"], 0)

    def test_output_path_tees_the_run_log(self):
        out = self.ws.parent / "logs"
        result = self.cli("--jobs", "fixture_write", "--output_path", str(out))
        self.assertEqual(result.returncode, 0, result.stderr)
        logs = list(out.glob("*.txt"))
        self.assertEqual(len(logs), 1)
        text = logs[0].read_text()
        self.assertIn("fixture_write/first", text)
        self.assertIn("latentrun summary", text)

    def test_subjobs_flag_runs_only_those(self):
        result = self.cli("--jobs", "fixture_write", "--subjobs", "first")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue((self.ws / "experiments/fixture/hello/first.txt").exists())
        self.assertFalse((self.ws / "experiments/fixture/hello/second-!.txt").exists())
        result = self.cli("--jobs", "fixture_write", "--subjobs", "third")
        self.assertEqual(result.returncode, 2)
        self.assertIn("it has: first, second", result.stderr)


class ProcessTest(TempWorkspace, unittest.TestCase):
    def pids(self) -> dict[str, str]:
        return {n: (self.ws / f"experiments/fixture/pid-{n}.txt").read_text() for n in "abc"}

    def test_each_subjob_in_its_own_process_unless_grouped(self):
        self.assertEqual(self.cli("--jobs", "fixture_pids").returncode, 0)
        pids = self.pids()
        self.assertEqual(pids["a"], pids["b"])
        self.assertNotEqual(pids["a"], pids["c"])

    def test_inline_runs_in_the_runner_process(self):
        self.assertEqual(self.cli("--jobs", "fixture_pids", "--inline").returncode, 0)
        self.assertEqual(len(set(self.pids().values())), 1)


class ShutdownTest(TempWorkspace, unittest.TestCase):
    def shutdown_command(self) -> str:
        marker = self.ws.parent / "shutdown.log"
        return f"{sys.executable} -c \"open('{marker}', 'a').write('down\\n')\""

    def test_called_once_after_all_jobs_only_when_asked(self):
        marker = self.ws.parent / "shutdown.log"
        self.cli("--jobs", "fixture_write", "fixture_checkpoint", "--set", "block_at=-1",
                 "--shutdown_command", self.shutdown_command())
        self.assertFalse(marker.exists())
        result = self.cli("--jobs", "fixture_write", "fixture_fail", "--shutdown_after_experiment",
                          "--shutdown_command", self.shutdown_command())
        self.assertEqual(result.returncode, 1)
        self.assertEqual(marker.read_text(), "down\n")
        self.assertLess(result.stdout.index("latentrun summary"), result.stdout.index("shutdown_after_experiment"))


if __name__ == "__main__":
    unittest.main()
