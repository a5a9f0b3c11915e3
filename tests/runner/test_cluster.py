"""The SLURM executor: generated submissions (fake sbatch), submitit's local path, requeue."""

from __future__ import annotations

import json
import os
import signal
import stat
import tempfile
import unittest
from pathlib import Path

from tests.runner.cli import TempWorkspace, start_cli, wait_for

FAKE_SBATCH = """#!/usr/bin/env bash
dir="$FAKE_SLURM_DIR"; n=$(( $(cat "$dir/counter" 2>/dev/null || echo 1000) + 1 )); echo $n > "$dir/counter"
cp "$1" "$dir/submission-$n.sh"; echo "Submitted batch job $n"
"""


def manifests(ws: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (ws / "experiments/runs").glob("*/manifest.json")}


class FakeSlurmTest(TempWorkspace, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.bin = self.ws.parent / "bin"
        self.spool = self.ws.parent / "spool"
        self.bin.mkdir()
        self.spool.mkdir()
        self.tool("sbatch", FAKE_SBATCH)
        self.tool("srun", "#!/bin/sh\nexit 0\n")

    def tool(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def submit(self):
        env = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(self.spool)}
        return self.cli("--jobs", "fixture_write", "fixture_gpu", "--set", "count=1,2,3", "--executor", "slurm",
                        "--executor-param", "wait=false", "--executor-param", "partition=gpu",
                        "--executor-param", "time=90", "--executor-param", "array_parallelism=2", **env)

    def scripts(self) -> dict[str, str]:
        return {p.stem.split("-")[1]: p.read_text() for p in self.spool.glob("submission-*.sh")}

    def test_submission_carries_resources_arrays_and_dependencies(self):
        result = self.submit()
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        scripts = self.scripts()
        self.assertEqual(len(scripts), 5, "one array for the 3 first steps, 1 GPU job, 3 dependent second steps")
        array = scripts["1001"]
        self.assertIn("#SBATCH --array=0-2%2", array)
        self.assertIn("#SBATCH --partition=gpu", array)
        self.assertIn("#SBATCH --time=90", array)
        self.assertIn("#SBATCH --gpus-per-node=1", scripts["1002"], "the DeviceMap's min_gpus")
        dependencies = sorted(line for s in scripts.values() for line in s.splitlines() if "--dependency" in line)
        self.assertEqual(dependencies, [f"#SBATCH --dependency=afterok:1001_{i}" for i in range(3)])
        recorded = manifests(self.ws)
        self.assertEqual(len(recorded), 4)
        ids = sorted(sub["slurm_job_id"] for m in recorded.values() for sub in m["subjobs"].values())
        self.assertEqual(ids, ["1001_0", "1001_1", "1001_2", "1002", "1003", "1004", "1005"])
        self.assertTrue(all(m["status"] == "submitted" for m in recorded.values()))

    def test_rerun_does_not_resubmit_queued_jobs(self):
        self.submit()
        self.tool("squeue", "#!/bin/sh\necho RUNNING\n")
        result = self.submit()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("still queued or running as SLURM job", result.stdout)
        self.assertEqual(len(self.scripts()), 5)


class LocalClusterTest(TempWorkspace, unittest.TestCase):
    def test_submitit_local_path_runs_jobs_end_to_end(self):
        result = self.cli("--jobs", "fixture_write", "--set", "count=1,2", "--executor", "slurm",
                          "--executor-param", "cluster=local")
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        self.assertEqual((self.ws / "experiments/fixture/hello/second-!.txt").read_text(), "hellohello!")
        for manifest in manifests(self.ws).values():
            self.assertEqual(manifest["status"], "completed")
            self.assertTrue(all(sub["slurm_job_id"] for sub in manifest["subjobs"].values()))
            self.assertEqual(manifest["executor"], "slurm")

    def test_interrupted_cluster_job_resumes_from_manifest_and_checkpoint(self):
        process = start_cli(["--jobs", "fixture_checkpoint", "--executor", "slurm", "--executor-param",
                             "cluster=local", "--workspace_path", str(self.ws)])
        started = self.ws / "experiments/fixture/started"
        wait_for(started)
        os.kill(int(started.read_text()), signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1, output)
        self.assertFalse((self.ws / "experiments/fixture/counted-5.txt").exists())
        (self.ws / "experiments/fixture/release").touch()
        result = self.cli("--jobs", "fixture_checkpoint", "--executor", "slurm", "--executor-param", "cluster=local")
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertEqual((self.ws / "experiments/fixture/counted-5.txt").read_text(), repr({"1": [0, 1], "2": [2, 3, 4]}))


class RequeueTest(unittest.TestCase):
    def test_task_requeues_itself_with_the_same_spec(self):
        from runner.cluster import SubJobTask

        task, spec = SubJobTask(), {"job": "j", "subjobs": []}
        delayed = task.checkpoint(spec)
        self.assertIs(delayed.function, task)
        self.assertEqual(delayed.args, (spec,))

    def test_requeued_worker_skips_subjobs_finished_before_preemption(self):
        from runner.atomic import write_json
        from runner.worker import run_spec

        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp)
            (ws / "out.txt").write_text("done before preemption")
            write_json(ws / "status/first.json", {"status": "completed"})
            spec = {"workspace": tmp, "job": "j", "run_id": "r", "device_map": "cpu", "status_dir": str(ws / "status"),
                    "subjobs": [{"name": "first", "function": "no.such.module:f", "params": {}, "reads": [],
                                 "writes": ["out.txt"], "key": "k"}]}
            self.assertTrue(run_spec(spec))


if __name__ == "__main__":
    unittest.main()
