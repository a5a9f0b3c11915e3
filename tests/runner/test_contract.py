"""Unit tests of the job contract and the atomic-output helper."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from runner.atomic import PARTIAL_SUFFIX, atomic_path, write_csv, write_json
from runner.jobs import DeviceMap, Job, Param, ParamError, SubJob, format_path


class ParamTest(unittest.TestCase):
    def test_parse_by_type_of_default(self):
        self.assertEqual(Param(1).parse("n", "7"), 7)
        self.assertEqual(Param(0.5).parse("s", "-5e-2"), -0.05)
        self.assertIs(Param(False).parse("b", "yes"), True)
        self.assertEqual(Param([1]).parse("layers", "8,12"), [8, 12])
        self.assertEqual(Param("x").parse("name", "huginn-0125"), "huginn-0125")
        self.assertEqual(Param(None, type=int).parse("limit", "3"), 3)

    def test_bad_values_raise_clear_errors(self):
        with self.assertRaisesRegex(ParamError, "expected float"):
            Param(0.5).parse("scale", "big")
        with self.assertRaisesRegex(ParamError, "expected bool"):
            Param(True).parse("flag", "maybe")
        with self.assertRaisesRegex(ParamError, "choose one of: UNIT_VECTOR"):
            Param("UNIT_VECTOR", choices=["UNIT_VECTOR"]).parse("norm", "OTHER")


class ContractTest(unittest.TestCase):
    def test_device_map_parse(self):
        self.assertEqual(DeviceMap.parse("auto").placement, "auto")
        self.assertEqual(DeviceMap.parse("cuda:1").min_gpus, 1)
        explicit = DeviceMap.parse('{"model.layers.0": 0, "lm_head": "cpu"}')
        self.assertEqual(explicit.placement, {"model.layers.0": 0, "lm_head": "cpu"})
        full = DeviceMap.parse({"placement": "auto", "min_gpus": 2, "max_memory": {"0": "20GiB"}})
        self.assertEqual((full.min_gpus, full.max_memory), (2, {"0": "20GiB"}))
        with self.assertRaises(ParamError):
            DeviceMap.parse(3)

    def test_paths_are_defined_by_params(self):
        path = format_path("experiments/x/{model}/{layers}.safetensors", {"model": "m", "layers": [1, 66]})
        self.assertEqual(path, "experiments/x/m/1-66.safetensors")
        with self.assertRaisesRegex(ValueError, "names 'mode', which is not a param"):
            format_path("experiments/{mode}.json", {})

    def test_subjob_names_must_be_unique(self):
        job = Job("j", "d", subjobs=[SubJob("a", "m:f"), SubJob("a", "m:g")])
        with self.assertRaisesRegex(ValueError, "repeat: a"):
            job.build_subjobs({})

    def test_plain_defaults_become_params(self):
        job = Job("j", "d", params={"scale": 1.0, "mode": Param("a", choices=["a"])})
        self.assertEqual(job.defaults(), {"scale": 1.0, "mode": "a"})


class AtomicTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_failure_leaves_neither_target_nor_temporary(self):
        target = self.dir / "out" / "a.json"
        with self.assertRaises(RuntimeError):
            with atomic_path(target) as tmp:
                tmp.write_text("half")
                raise RuntimeError("crash")
        self.assertFalse(target.exists())
        self.assertEqual(list(target.parent.iterdir()), [])

    def test_success_replaces_and_stale_temporaries_are_removed(self):
        target = self.dir / "a.json"
        stale = self.dir / f".a.json.999{PARTIAL_SUFFIX}"
        stale.write_text("left by a killed writer")
        write_json(target, {"v": 1})
        write_json(target, {"v": 2})
        self.assertEqual(target.read_text().split(), ["{", '"v":', "2", "}"])
        self.assertFalse(stale.exists())

    def test_directory_mode_replaces_a_folder(self):
        target = self.dir / "model"
        for version in ("1", "2"):
            with atomic_path(target, directory=True) as tmp:
                (tmp / "config.json").write_text(version)
        self.assertEqual((target / "config.json").read_text(), "2")
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["model"])

    def test_csv_rows_round_trip_with_the_first_rows_columns(self):
        import csv

        rows = [{"layer": 0, "kl": 0.5, "subset": "reasoning"}, {"layer": 1, "kl": None, "subset": "m", "extra": 1}]
        write_csv(self.dir / "t.csv", rows)
        back = list(csv.DictReader((self.dir / "t.csv").read_text().splitlines()))
        self.assertEqual(back, [{"layer": "0", "kl": "0.5", "subset": "reasoning"}, {"layer": "1", "kl": "", "subset": "m"}])
        write_csv(self.dir / "t.csv", rows, columns=["subset"])
        self.assertEqual((self.dir / "t.csv").read_text(), "subset\nreasoning\nm\n")

    def test_writer_that_writes_nothing_is_an_error(self):
        with self.assertRaisesRegex(FileNotFoundError, "wrote nothing"):
            with atomic_path(self.dir / "never.bin"):
                pass


if __name__ == "__main__":
    unittest.main()
