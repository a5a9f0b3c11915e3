"""Tiny workspaces for the save_hidden_states / candidate_directions / probes tests.

``make_workspace(root)`` writes, in a second or two: a word-level tokenizer,
an untrained tiny Llama and an untrained tiny Huginn (saved as safetensors
under ``transformers/``) and a small LiReFs-schema data set whose reasoning
and memorizing questions differ in kind, so the jobs' code paths run for real
(loading, prompts, batching, capture, writing) without the example workspace.
"""

from __future__ import annotations

import json
import random
import tempfile
import unittest
from pathlib import Path
from typing import Any

import torch

from runner.context import CheckpointStore, SubJobContext
from runner.jobs import DeviceMap, format_path
from runner.workspace import Workspace

LLAMA, HUGINN = "tiny-llama", "tiny-huginn"
WORDS = ["Zorb", "Quell", "Mirth", "Vask", "Tolle", "Brin", "Ostra", "Kell"]


def lirefs_entries(n_each: int = 12, seed: int = 0, start: int = 0) -> list[dict[str, Any]]:
    """Memorizing (recall) and reasoning (arithmetic) questions in the LiReFs schema, shuffled."""
    rng = random.Random(seed)
    entries = []
    for i in range(n_each):
        place = rng.choice(WORDS)
        entries.append({"question": f"What is the capital of {place} ?" + " Recall it ." * rng.randint(0, 3),
                        "options": ["Zorb", "Quell", "Mirth", "Vask"], "answer": "A", "category": "geography",
                        "memory_reason_score": 0.2})
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        entries.append({"question": f"Compute {a} plus {b} then times {c} ." + " Then add 1 ." * rng.randint(0, 3),
                        "options": ["1", "2", "3", "4"], "answer": "B", "category": "math",
                        "memory_reason_score": 0.8})
    rng.shuffle(entries)
    for k, entry in enumerate(entries):
        entry["question_id"] = start + k
    return entries


def make_tokenizer(out_dir: Path | None = None):
    from models.training import train_tokenizer

    texts = [e["question"] for e in lirefs_entries(40, seed=1)] + ["Q : A :", " ".join(WORDS)]
    texts += [" ".join(str(i) for i in range(10))]
    return train_tokenizer(texts, vocab_size=200, kind="wordlevel", out_dir=out_dir)


def tiny_llama(vocab: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         pad_token_id=2, bos_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.3)
    return model.eval()


def tiny_huginn(vocab: int, seed: int = 0):
    from models.huginn.configuration import HuginnConfig
    from models.huginn.modeling import HuginnForCausalLM

    torch.manual_seed(seed)
    config = HuginnConfig(n_embd=16, num_attention_heads=2, vocab_size=vocab, intermediate_size=32,
                          n_layers_in_prelude=1, n_layers_in_recurrent_block=2, n_layers_in_coda=1,
                          mean_recurrence=3, block_size=128)
    return HuginnForCausalLM(config).eval()


def make_workspace(root: Path, n_each: int = 12, control: bool = True) -> Workspace:
    """A workspace with both tiny models, ``mmlu-pro-3000samples.json`` and ``surface-matched.json``."""
    root.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer()
    for name, build in ((LLAMA, tiny_llama), (HUGINN, tiny_huginn)):
        folder = root / "transformers" / name
        model = build(len(tok))
        model.config.pad_token_id = tok.pad_token_id
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    data = root / "datasets" / "lirefs"
    data.mkdir(parents=True, exist_ok=True)
    (data / "mmlu-pro-3000samples.json").write_text(json.dumps(lirefs_entries(n_each, seed=0)))
    if control:
        (data / "surface-matched.json").write_text(json.dumps(lirefs_entries(n_each, seed=7)))
    return Workspace.open(root)


def context(workspace: Workspace, function: str, params: dict[str, Any], reads: list[str], writes: list[str],
            name: str = "test") -> SubJobContext:
    """A sub-job context like the worker builds (paths formatted from params)."""
    reads = [format_path(r, params) for r in reads]
    writes = [format_path(w, params) for w in writes]
    key = f"{function}-{abs(hash(json.dumps(params, sort_keys=True, default=str))) % 10**10}"
    return QuietContext(job=name, subjob=name, run_id=f"{name}-0", params=dict(params), workspace=workspace,
                         device_map=DeviceMap("cpu"), reads=[workspace.path(r) for r in reads],
                         writes=[workspace.path(w) for w in writes],
                         checkpoint=CheckpointStore(workspace.experiments / "checkpoints" / name / key))


def params_for(**overrides: Any) -> dict[str, Any]:
    """Resolved extraction params (the job defaults) with overrides and the derived ``variant``."""
    from plugins.common.hidden_states import extraction_params, variant

    params = {k: p.default for k, p in extraction_params().items()}
    params.update(overrides)
    params["variant"] = variant(params)
    return params


_TEMPLATE: list[Any] = []


def workspace_copy(root: Path) -> Workspace:
    """A fresh copy of a workspace built once per process by :func:`make_workspace`."""
    import atexit
    import shutil
    import tempfile

    if not _TEMPLATE:
        holder = tempfile.TemporaryDirectory()
        atexit.register(holder.cleanup)
        make_workspace(Path(holder.name) / "ws")
        _TEMPLATE.append(holder)
    shutil.copytree(Path(_TEMPLATE[0].name) / "ws", root)
    return Workspace.open(root)


class QuietContext(SubJobContext):
    """A context without progress lines (the tests' output stays readable)."""

    def progress(self, items, total=None, description=""):
        yield from items


class FailingContext(SubJobContext):
    """A context whose progress raises after ``fail_after`` items: a kill in the middle of a sub-job."""

    fail_after: int = -1

    def progress(self, items, total=None, description=""):
        for i, item in enumerate(items):
            if i == self.fail_after:
                raise KeyboardInterrupt("simulated kill")
            yield item


def failing(ctx: SubJobContext, fail_after: int) -> FailingContext:
    import dataclasses

    out = FailingContext(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)})
    out.fail_after = fail_after
    return out


class WorkspaceCase(unittest.TestCase):
    """A test class with its own copy of the synthetic workspace (``cls.ws``).

    Override :meth:`build_workspace` to build another one in the class's temporary folder.
    """

    @classmethod
    def build_workspace(cls, root: Path) -> Workspace:
        return workspace_copy(root)

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.TemporaryDirectory()
        cls.ws = cls.build_workspace(Path(cls._tmp.name) / "ws")

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()
