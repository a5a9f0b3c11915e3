"""plugins.common.lirefs.import_dataset_zip and the import_lirefs job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

from plugins.common.lirefs import import_dataset_zip
from tests.support import REPO_ROOT

DATA = json.dumps([{"question": "What is 2 + 3?", "options": ["4", "5"], "answer": "B", "category": "math",
                    "memory_reason_score": 0.8}]).encode()


class ImportZipTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.ws = self.root / "W"
        self.ws.mkdir()

    def tearDown(self):
        self.tmp.cleanup()

    def make_zip(self, members: dict[str, bytes]) -> Path:
        path = self.root / "dataset.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        return path

    def test_lands_unchanged(self):
        members = {"mmlu-pro-3000samples.json": DATA, "mmlu-pro/validation/data.arrow": b"\x00\x01arrow",
                   "gsm8k/main/test.jsonl": b'{"q": 1}\n'}
        target = import_dataset_zip(self.make_zip(members), self.ws)
        self.assertEqual(target, self.ws / "datasets" / "lirefs")
        found = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
        self.assertEqual(found, members)
        self.assertEqual([p.name for p in target.parent.iterdir()], ["lirefs"])  # no temporaries left

    def test_one_wrapping_folder_is_unwrapped(self):
        target = import_dataset_zip(self.make_zip({"dataset/mmlu-pro-3000samples.json": DATA,
                                                   "dataset/mmlu-pro/x.arrow": b"1"}), self.ws)
        self.assertEqual((target / "mmlu-pro-3000samples.json").read_bytes(), DATA)
        self.assertTrue((target / "mmlu-pro" / "x.arrow").exists())

    def test_path_traversal_is_refused_and_nothing_is_written(self):
        for bad in ("../evil.txt", "ok/../../evil.txt", "/abs/evil.txt"):
            with self.subTest(bad=bad):
                path = self.make_zip({"mmlu-pro-3000samples.json": DATA, bad: b"x"})
                with self.assertRaises(ValueError):
                    import_dataset_zip(path, self.ws)
                self.assertFalse((self.ws / "datasets" / "lirefs").exists())
                self.assertFalse((self.root / "evil.txt").exists())
                leftovers = list((self.ws / "datasets").iterdir()) if (self.ws / "datasets").exists() else []
                self.assertEqual(leftovers, [])

    def test_failure_mid_extraction_leaves_nothing(self):
        path = self.make_zip({"a.json": DATA, "b.json": DATA})
        real_open = zipfile.ZipFile.open
        calls = []

        def failing_open(archive, name, *args, **kwargs):
            calls.append(name)
            if len(calls) == 2:
                raise OSError("disk full")
            return real_open(archive, name, *args, **kwargs)

        zipfile.ZipFile.open = failing_open
        try:
            with self.assertRaises(OSError):
                import_dataset_zip(path, self.ws)
        finally:
            zipfile.ZipFile.open = real_open
        self.assertEqual(list((self.ws / "datasets").iterdir()), [])

    def test_existing_target_needs_overwrite(self):
        path = self.make_zip({"mmlu-pro-3000samples.json": DATA})
        import_dataset_zip(path, self.ws)
        with self.assertRaises(FileExistsError):
            import_dataset_zip(path, self.ws)
        import_dataset_zip(self.make_zip({"new.json": DATA}), self.ws, overwrite=True)
        self.assertEqual(sorted(p.name for p in (self.ws / "datasets" / "lirefs").iterdir()), ["new.json"])

    def test_job_from_the_command_line(self):
        path = self.make_zip({"mmlu-pro-3000samples.json": DATA})
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "runner" / "main.py"), "--jobs", "import_lirefs",
                               "--set", f"zip_path={path}", "--workspace_path", str(self.ws), "--inline"],
                              capture_output=True, text=True, env=env, cwd=self.root, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual((self.ws / "datasets" / "lirefs" / "mmlu-pro-3000samples.json").read_bytes(), DATA)
        record = json.loads((self.ws / "experiments" / "import_lirefs" / "import.json").read_text())
        self.assertEqual(record["entries"], 1)
        self.assertEqual(record["reasoning"], 1)


if __name__ == "__main__":
    unittest.main()
