"""Per-prompt hidden states on disk: params, artifact paths and the reader.

Shared by the ``save_hidden_states`` and ``candidate_directions`` plugins
(which must not import each other). Nothing here imports torch at import
time; the extraction loop itself is in :mod:`plugins.common.extraction`.

On-disk format (``experiments/hidden_states/<model>/<dataset>/<mode>[@variant]/``)::

    hidden_states.json          sidecar: model, dataset, mode, layers, labels, prompt hashes, shards
    shard-00000.safetensors     one tensor per layer: "embed", "0", "1", ... each [rows, hidden]
    shard-00001.safetensors     ...

Rows are in processing order (longest prompt first); ``indices`` in the
sidecar give each row's position in the data set file. Open it with::

    from plugins.common.hidden_states import open_hidden_states
    hs = open_hidden_states("W/experiments/hidden_states/huginn-0125/mmlu-pro-3000samples/FIRST_ANSWER_TOKEN")
    hs.layer(66)        # Tensor[N, hidden], rows aligned with hs.labels
    hs.layer("embed")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from runner.jobs import Param, SubJob

FORMAT = "latentrun.hidden_states/1"
SIDECAR = "hidden_states.json"
MODES = ("FIRST_ANSWER_TOKEN", "ALL_TOKENS")
#: How each mode reduces a prompt's tokens, in ``models.capture`` terms.
REDUCTION = {"FIRST_ANSWER_TOKEN": "last", "ALL_TOKENS": "mean"}
REASONING, MEMORIZING = "reasoning", "memorizing"
LABELS = (REASONING, MEMORIZING)
TEMPLATES = ("extraction", "evaluation")
DTYPES = ("auto", "float32", "bfloat16", "float16")

DATASET_FILE = "datasets/lirefs/{dataset}.json"
HIDDEN_STATES_DIR = "experiments/hidden_states/{model}/{dataset}/{mode}{variant}"

#: Params that change the numbers, with the values that give the canonical
#: (suffix-free) artifact path. Any other value adds ``@key=value,...`` to the
#: path, so runs with different params never overwrite each other.
CANONICAL = {
    "sample_size": None,
    "prompt_template": "extraction",
    "num_steps": None,
    "init_scale": 1.0,
    "seed": 0,
    "dtype": "auto",
}
#: What an extraction result depends on (the runner's ``uses``). batch_size,
#: padding_side, shard_size, checkpoint_seconds and num_processes change only float rounding
#: or the file layout, so changing them does not redo a completed extraction.
EXTRACTION_USES = ("model", "dataset", "mode", *CANONICAL, "variant")


def extraction_params(**defaults: Any) -> dict[str, Param]:
    """The params every hidden-state job has; ``defaults`` override the default values."""
    params = {
        "model": Param("huginn-0125", "model: folder under W/transformers (or a latentrun.toml [models] name)"),
        "dataset": Param("mmlu-pro-3000samples", "LiReFs-schema file W/datasets/lirefs/<dataset>.json"),
        "mode": Param("FIRST_ANSWER_TOKEN", "FIRST_ANSWER_TOKEN: last prompt token; ALL_TOKENS: mean over "
                      "non-padding tokens", choices=MODES),
        "batch_size": Param(8, "prompts per forward (padded, longest first)"),
        "sample_size": Param(None, "use a random sample of this many items (seeded); default all", type=int),
        "prompt_template": Param("extraction", "prompt template of plugins.common.prompts (the seed extracts "
                                 "with 'extraction': no options, no few-shot)", choices=TEMPLATES),
        "num_steps": Param(None, "Huginn recurrence steps (default: the model's mean_recurrence, 32 for "
                           "huginn-0125); ignored by other models", type=int),
        "init_scale": Param(1.0, "Huginn: scale of the random initial latent state (0 = zeros); drawn per "
                            "prompt from seed, so a prompt's states do not depend on its batch"),
        "seed": Param(0, "seed of sampling, Huginn's initial state and the probes' split"),
        "dtype": Param("auto", "model dtype (auto = the checkpoint's)", choices=DTYPES),
        "padding_side": Param("left", "padding side of batches (results do not depend on it)",
                              choices=("left", "right")),
        "shard_size": Param(256, "prompts per safetensors shard (bounds memory)"),
        "checkpoint_seconds": Param(30.0, "save resumable progress at most this often"),
        "num_processes": Param(1, "data-parallel processes for streamed directions: each takes every N-th "
                               "prompt (one GPU each when there are enough), merged exactly"),
    }
    for key, value in defaults.items():
        old = params[key]
        params[key] = Param(value, old.help, old.type, old.choices)
    return params


def variant(params: Mapping[str, Any]) -> str:
    """``""`` for the canonical params, else ``"@sample_size=100,seed=1"`` (sorted, stable)."""
    parts = [f"{key}={params[key]}" for key in CANONICAL if key in params and params[key] != CANONICAL[key]]
    return "@" + ",".join(parts) if parts else ""


def extraction_subjob(params: Mapping[str, Any], name: str = "save_hidden_states",
                      dataset: str | None = None) -> SubJob:
    """The sub-job that writes the hidden states of ``params`` (optionally of another data set).

    Every job that needs saved hidden states starts with this sub-job; the
    runner skips it when an earlier run (of any job) already wrote them.
    """
    sub_params: dict[str, Any] = {"variant": variant(params)}
    if dataset is not None:
        sub_params["dataset"] = dataset
    return SubJob(name, "plugins.common.extraction:save_hidden_states", params=sub_params,
                  reads=[DATASET_FILE], writes=[HIDDEN_STATES_DIR], process_group=f"model:{params['model']}",
                  uses=EXTRACTION_USES)


def encode_key(key: int | str) -> str:
    return str(key)


def decode_key(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


class HiddenStates:
    """A saved hidden-states folder: sidecar metadata and lazy per-layer reads."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        sidecar = self.folder / SIDECAR
        if not sidecar.is_file():
            raise FileNotFoundError(f"{self.folder} is not a hidden-states folder (no {SIDECAR})")
        self.meta: dict[str, Any] = json.loads(sidecar.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{sidecar}: format {self.meta.get('format')!r}, expected {FORMAT!r}")

    @property
    def layers(self) -> list[int | str]:
        """Layer keys in order: ``"embed"``, then 0, 1, ... (DESIGN.md numbering)."""
        return [entry["key"] for entry in self.meta["layers"]]

    @property
    def layer_names(self) -> list[str]:
        return [entry["name"] for entry in self.meta["layers"]]

    @property
    def labels(self) -> list[str]:
        return self.meta["labels"]

    @property
    def indices(self) -> list[int]:
        return self.meta["indices"]

    def __len__(self) -> int:
        return len(self.meta["labels"])

    def _shards(self) -> list[tuple[Path, int]]:
        return [(self.folder / shard["file"], shard["rows"]) for shard in self.meta["shards"]]

    def layer(self, key: int | str, dtype: Any = None) -> Any:
        """``Tensor[N, hidden]`` of one layer, rows aligned with :attr:`labels`."""
        import torch
        from safetensors import safe_open

        name = encode_key(key)
        parts = []
        for path, _rows in self._shards():
            with safe_open(str(path), framework="pt") as handle:
                if name not in handle.keys():
                    raise KeyError(f"no layer {key!r} in {path} (layers: {self.layers[:4]} ...)")
                parts.append(handle.get_tensor(name))
        out = torch.cat(parts) if parts else torch.empty(0)
        return out if dtype is None else out.to(dtype)

    def iter_shards(self) -> Iterator[tuple[list[str], dict[int | str, Any]]]:
        """``(labels, {layer: Tensor[rows, hidden]})`` per shard, in row order."""
        from safetensors.torch import load_file

        start = 0
        for path, rows in self._shards():
            tensors = load_file(str(path))
            yield self.labels[start:start + rows], {decode_key(k): v for k, v in tensors.items()}
            start += rows

    def accumulator(self) -> Any:
        """A :class:`models.accumulators.Accumulator` of every row, labelled reasoning/memorizing."""
        from models.accumulators import Accumulator

        acc = Accumulator()
        for labels, values in self.iter_shards():
            acc.update({key: values[key] for key in self.layers}, labels)
        return acc


def open_hidden_states(folder: str | Path) -> HiddenStates:
    """Open a folder written by ``save_hidden_states``."""
    return HiddenStates(folder)


def write_hidden_states(folder: str | Path, values: Mapping[int | str, Any], labels: list[str],
                        layer_names: Mapping[int | str, str] | None = None, indices: list[int] | None = None,
                        shard_size: int = 256, **meta: Any) -> HiddenStates:
    """Write ``{layer: Tensor[N, hidden]}`` (e.g. synthetic or imported states) in this format, atomically."""
    from safetensors.torch import save_file

    from runner.atomic import atomic_path, write_json

    keys = list(values)
    n = len(labels)
    shards = []
    with atomic_path(folder, directory=True) as tmp:
        for k, start in enumerate(range(0, n, max(1, shard_size))):
            name = f"shard-{k:05d}.safetensors"
            rows = min(shard_size, n - start)
            save_file({encode_key(key): values[key][start:start + rows].contiguous() for key in keys},
                      str(tmp / name), metadata={"format": FORMAT, "rows": str(rows)})
            shards.append({"file": name, "rows": rows})
        names = layer_names or {}
        sidecar = {"format": FORMAT, **meta, "count": n,
                   "layers": [{"key": key, "name": names.get(key, str(key))} for key in keys],
                   "labels": list(labels), "indices": list(indices) if indices is not None else list(range(n)),
                   "prompt_sha256": meta.get("prompt_sha256", [""] * n), "shards": shards}
        write_json(tmp / SIDECAR, sidecar)
    return HiddenStates(folder)
