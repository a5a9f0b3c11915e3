"""Load a causal LM and its tokenizer from the workspace, offline.

Where a model is looked for, in order:

1. ``W/transformers/<name>`` (through the workspace's ``latentrun.toml``
   model-name mapping when a :class:`runner.workspace.Workspace` is given),
   or ``name_or_path`` itself when no workspace is given;
2. the local Hugging Face cache (``huggingface_hub``, ``local_files_only``).

Nothing is ever downloaded. Weights are read from safetensors; pickled
``.bin``/``.pt`` weights only with ``allow_pickle=True``, because
unpickling runs arbitrary code.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

PICKLE_HINT = (
    "pickled weights can run arbitrary code when loaded; if you trust them pass allow_pickle=True "
    "(job param: --set allow_pickle=true), or convert them to safetensors once"
)
_SAFE_WEIGHTS = ("*.safetensors", "*.safetensors.index.json")
_PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.bin.index.json", "*.ckpt")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt",
                    "tekken.json", "sentencepiece.bpe.model")
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "auto": "auto",
}


#: below this many parameters a CPU model runs on one torch thread (see limit_threads_for_tiny_model)
TINY_MODEL_PARAMS = 20_000_000


def limit_threads_for_tiny_model(model: Any, max_params: int = TINY_MODEL_PARAMS) -> bool:
    """Use one torch thread when ``model`` is tiny and on the CPU; return whether it did.

    Tiny matmuls gain nothing from threads, and on a shared, oversubscribed
    CPU two threads made the example workspace's forwards ~5-10x slower.
    The setting is process-wide (sub-jobs run in their own worker process).
    """
    device = getattr(model, "device", None)
    if getattr(device, "type", "cpu") != "cpu" or sum(p.numel() for p in model.parameters()) >= max_params:
        return False
    torch.set_num_threads(1)
    return True


class ModelLoadError(RuntimeError):
    """The model cannot be found or loaded; the message says where and why."""


def parse_dtype(dtype: Any) -> Any:
    """``"bfloat16"`` -> ``torch.bfloat16``; ``"auto"`` stays ``"auto"``."""
    if isinstance(dtype, torch.dtype) or dtype is None:
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of float32, bfloat16, float16, auto")
    return _DTYPES[key]


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - very old huggingface_hub
        return "~/.cache/huggingface/hub"


def _from_hf_cache(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id``, or None; never touches the network."""
    if not repo_id or repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1:
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True))
    except Exception:  # not cached, or not a valid repo id
        return None


def resolve_model_dir(name_or_path: str | Path, workspace: Any = None, revision: str | None = None) -> Path:
    """The directory holding the model, or one error listing every place looked at."""
    name = str(name_or_path)
    looked: list[str] = []
    candidates: list[str] = [name]
    if workspace is None:
        primary = Path(name).expanduser()
    elif hasattr(workspace, "model_dir"):
        primary = Path(workspace.model_dir(name))
        mapped = getattr(workspace, "model_name", lambda n: n)(name)
        if mapped != name:
            candidates.append(str(mapped))
    else:
        primary = Path(workspace).expanduser() / "transformers" / name
    if primary.is_dir():
        return primary
    looked.append(f"{primary} ({'not a directory' if primary.exists() else 'missing'})")
    for repo_id in candidates:
        found = _from_hf_cache(repo_id, revision)
        if found is not None:
            return found
    looked.append(f"the local Hugging Face cache {_hf_cache_dir()} (offline) for "
                  + ", ".join(repr(c) for c in dict.fromkeys(candidates)))
    raise ModelLoadError(f"model {name!r} not found; looked in:\n  - " + "\n  - ".join(looked)
                         + "\nPut the model under W/transformers/<name> or map the name in latentrun.toml [models].")


def _has(directory: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(p for pattern in patterns for p in directory.glob(pattern))


def check_model_dir(directory: Path, allow_pickle: bool = False, need_tokenizer: bool = True) -> dict[str, Any]:
    """Check a model directory; one error naming everything that is missing."""
    problems: list[str] = []
    if not (directory / "config.json").is_file():
        problems.append("config.json is missing")
    safe = _has(directory, _SAFE_WEIGHTS)
    pickled = [p for p in _has(directory, _PICKLED_WEIGHTS) if p.name != "training_args.bin"]
    if not safe and not pickled:
        problems.append("no weights (*.safetensors, or pickled pytorch_model.bin with allow_pickle=True)")
    elif not safe and not allow_pickle:
        names = ", ".join(p.name for p in pickled[:3])
        problems.append(f"only pickled weights ({names}); {PICKLE_HINT}")
    if need_tokenizer and not _has(directory, _TOKENIZER_FILES):
        problems.append("no tokenizer files (tokenizer.json, tokenizer.model, or vocab.json + merges.txt)")
    if problems:
        raise ModelLoadError(f"model directory {directory} cannot be loaded:\n  - " + "\n  - ".join(problems))
    return {"safetensors": bool(safe), "pickled": bool(pickled)}


def _register_builtin_architectures() -> None:
    """Import our Huginn package so its ``model_type`` is known to the Auto classes."""
    try:
        import models.huginn  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name not in ("models.huginn",):
            warnings.warn(f"models.huginn could not be imported ({err}); Huginn checkpoints will not load",
                          stacklevel=3)
    except ImportError as err:
        warnings.warn(f"models.huginn could not be imported ({err}); Huginn checkpoints will not load", stacklevel=3)


def _placement(device_map: Any, max_memory: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """Split a DeviceMap / string / dict into transformers' ``device_map`` and ``max_memory``."""
    if hasattr(device_map, "placement"):
        max_memory = max_memory if max_memory is not None else getattr(device_map, "max_memory", None)
        device_map = device_map.placement
    if isinstance(device_map, Mapping):
        device_map = dict(device_map)
        devices = [str(v) for v in device_map.values()]
    elif device_map is None:
        devices = ["cpu"]
    else:
        device_map = str(device_map)
        devices = [device_map]
    if any(d.startswith("cuda") or d.isdigit() for d in devices) and not torch.cuda.is_available():
        raise ModelLoadError(f"device_map {device_map!r} needs CUDA, but no GPU is visible on this machine")
    if device_map in ("cpu", None) and not max_memory:
        return None, None  # a plain CPU load: no accelerate dispatch hooks on the model
    if max_memory:
        max_memory = {(int(k) if str(k).isdigit() else k): v for k, v in dict(max_memory).items()}
    return device_map, max_memory or None


def _quantization_config(quantization: str | None) -> Any:
    if quantization in (None, "", "none", False):
        return None
    kind = str(quantization).lower().replace("-", "").replace("_", "")
    if kind not in ("8bit", "4bit", "int8", "int4", "nf4"):
        raise ModelLoadError(f"quantization {quantization!r}: use '8bit' or '4bit'")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"quantization={quantization!r} needs the bitsandbytes package, which is not installed")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"quantization={quantization!r} needs a CUDA GPU for bitsandbytes; none is visible")
    from transformers import BitsAndBytesConfig

    if kind in ("8bit", "int8"):
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True)


def load_tokenizer(directory: str | Path, trust_remote_code: bool = False, padding_side: str | None = None) -> Any:
    """The tokenizer in ``directory``, with a pad token (eos) when it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True,
                                              trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
    if padding_side is not None:
        if padding_side not in ("left", "right"):
            raise ModelLoadError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        tokenizer.padding_side = padding_side
    return tokenizer


def load_model(name_or_path: str | Path, workspace: Any = None, device_map: Any = "cpu", dtype: Any = "float32",
               allow_pickle: bool = False, trust_remote_code: bool = False, quantization: str | None = None,
               max_memory: Mapping[str, Any] | None = None, *, padding_side: str | None = None,
               revision: str | None = None, eval_mode: bool = True) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` offline; see the module docstring for where it looks.

    ``workspace``: a :class:`runner.workspace.Workspace`, a workspace root, or
    None (``name_or_path`` is a directory). ``device_map``: a
    ``runner.jobs.DeviceMap``, ``"cpu"``, ``"auto"``, ``"cuda:0"`` or
    ``{module: device}``. The tokenizer keeps its own padding side unless
    ``padding_side`` is given; the model learns the tokenizer's pad id when
    its config has none.
    """
    directory = resolve_model_dir(name_or_path, workspace, revision)
    check_model_dir(directory, allow_pickle=allow_pickle)
    torch_dtype = parse_dtype(dtype)
    placement, memory = _placement(device_map, max_memory)
    quant = _quantization_config(quantization)
    _register_builtin_architectures()

    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "trust_remote_code": trust_remote_code,
        "dtype": torch_dtype,
        "use_safetensors": None if allow_pickle else True,
    }
    if placement is not None:
        kwargs["device_map"] = placement
    if memory:
        kwargs["max_memory"] = memory
    if quant is not None:
        kwargs["quantization_config"] = quant
    try:
        model = AutoModelForCausalLM.from_pretrained(str(directory), **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"loading the model in {directory} failed: {err}") from err
    if eval_mode:
        model.eval()
    tokenizer = load_tokenizer(directory, trust_remote_code=trust_remote_code, padding_side=padding_side)
    pad = tokenizer.pad_token_id
    if pad is not None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = pad
        generation = getattr(model, "generation_config", None)
        if generation is not None and getattr(generation, "pad_token_id", None) is None:
            generation.pad_token_id = pad
    return model, tokenizer
