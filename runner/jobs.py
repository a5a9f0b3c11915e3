"""The job contract: ``Job``, ``SubJob``, ``Param`` and ``DeviceMap``.

A job is a named, parameterised recipe. Its sub-jobs are built from the
resolved params (so one job covers a grid, a list of revisions, ...), each
sub-job names the function it runs as ``"module:function"`` and the
workspace-relative artifacts it ``reads`` and ``writes``. Paths are
``str.format`` templates over the params: an artifact's path is defined by
the params that make it, never by the preset that ran it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

_MISSING = object()


@dataclass(frozen=True)
class Param:
    """A job parameter: its default, type and allowed values.

    A job may list plain defaults (``{"scale": 1.0}``); they become
    ``Param(default=1.0)`` and take their type from the default.
    """

    default: Any = None
    help: str = ""
    type: type | None = None
    choices: Sequence[Any] | None = None

    @property
    def kind(self) -> type:
        if self.type is not None:
            return self.type
        if self.default is None:
            return str
        return type(self.default)

    def parse(self, name: str, text: str) -> Any:
        """Turn the text of ``--set name=text`` into a typed, checked value."""
        kind = self.kind
        try:
            if kind is bool:
                lowered = text.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(text)
                value: Any = lowered in {"true", "1", "yes"}
            elif kind in (list, tuple):
                item_kind = type(self.default[0]) if self.default else str
                value = [_parse_scalar(item_kind, item) for item in text.split(",") if item != ""]
            elif kind is dict:
                value = json.loads(text)
            else:
                value = _parse_scalar(kind, text)
        except (ValueError, json.JSONDecodeError):
            raise ParamError(f"--set {name}={text}: expected {kind.__name__}, got {text!r}") from None
        return self.check(name, value)

    def check(self, name: str, value: Any) -> Any:
        if self.choices is not None:
            values = value if isinstance(value, list) else [value]
            bad = [v for v in values if v not in self.choices]
            if bad:
                allowed = ", ".join(map(str, self.choices))
                raise ParamError(f"{name}={bad[0]!r} is not allowed; choose one of: {allowed}")
        return value


def _parse_scalar(kind: type, text: str) -> Any:
    if kind is bool:
        return text.strip().lower() in {"true", "1", "yes"}
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return kind(text)


class ParamError(ValueError):
    """A bad ``--set`` value or workspace default; the message says which key and why."""


@dataclass(frozen=True)
class DeviceMap:
    """Where a job's model goes, and what the machine must have for it.

    ``placement`` is ``"cpu"``, ``"auto"`` (accelerate spreads the model over
    the visible GPUs, then CPU), ``"cuda"``/``"cuda:N"``, or an explicit
    mapping ``{module name: device}``. ``max_memory`` is passed to accelerate
    (``{"0": "20GiB", "cpu": "60GiB"}``). ``min_gpus`` and
    ``min_gpu_memory_gb`` are checked against the machine before anything runs.
    """

    placement: str | Mapping[str, Any] = "cpu"
    min_gpus: int = 0
    min_gpu_memory_gb: float | None = None
    max_memory: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "placement": dict(self.placement) if isinstance(self.placement, Mapping) else self.placement,
            "min_gpus": self.min_gpus,
            "min_gpu_memory_gb": self.min_gpu_memory_gb,
            "max_memory": dict(self.max_memory) if self.max_memory else None,
        }

    @classmethod
    def parse(cls, value: Any) -> DeviceMap:
        """Accept a DeviceMap, a placement string/mapping or a JSON-like dict."""
        if isinstance(value, DeviceMap):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return cls.parse(json.loads(text))
            return cls(placement=text, min_gpus=1 if text.startswith("cuda") else 0)
        if isinstance(value, Mapping):
            if "placement" in value:
                return cls(**{k: value[k] for k in value if k in _DEVICE_MAP_FIELDS})
            return cls(placement=dict(value))
        raise ParamError(f"device_map: cannot read {value!r}")

    def describe(self) -> str:
        text = self.placement if isinstance(self.placement, str) else f"{len(self.placement)} modules"
        if self.min_gpus:
            text += f", >= {self.min_gpus} GPU"
        if self.min_gpu_memory_gb:
            text += f" x {self.min_gpu_memory_gb:g} GB"
        return str(text)


_DEVICE_MAP_FIELDS = {f.name for f in dataclasses.fields(DeviceMap)}


@dataclass
class SubJob:
    """One step of a job.

    ``function`` is ``"module:function"``; it is imported only when the
    sub-job runs and is called with one argument, the ``SubJobContext``.
    ``reads``/``writes`` are workspace-relative path templates formatted with
    the sub-job's params. ``process_group``: consecutive sub-jobs of one job
    with the same non-empty group (e.g. the model they load) share one
    worker process. ``uses`` names the params the result depends on (default:
    all); only those decide whether a completed sub-job must rerun, so
    changing one param reruns just the sub-jobs it affects.
    """

    name: str
    function: str
    params: dict[str, Any] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    process_group: str = ""
    uses: Sequence[str] | None = None

    def resolved_reads(self) -> list[str]:
        return [format_path(p, self.params) for p in self.reads]

    def resolved_writes(self) -> list[str]:
        return [format_path(p, self.params) for p in self.writes]


@dataclass
class Job:
    """A named, parameterised job, or a group of other jobs.

    ``subjobs`` builds the sub-job list from the resolved params (a callable)
    or is a fixed list. ``group`` makes the job an alias for other jobs run in
    order (``mmlu_pro`` = all its presets). ``inputs`` are the workspace paths
    the job needs before it starts (models, data sets), as templates over the
    params: they are checked for every selected job before anything runs.
    ``device_map`` is the default placement; the workspace config and
    ``--set device_map=...`` override it.
    """

    name: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    subjobs: Callable[[dict[str, Any]], list[SubJob]] | list[SubJob] = field(default_factory=list)
    device_map: DeviceMap = field(default_factory=DeviceMap)
    inputs: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    plugin: str = ""  # filled in by the plugin manager

    def __post_init__(self) -> None:
        self.params = {k: v if isinstance(v, Param) else Param(default=v) for k, v in self.params.items()}

    @property
    def is_group(self) -> bool:
        return bool(self.group)

    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}

    def build_subjobs(self, params: dict[str, Any]) -> list[SubJob]:
        built = self.subjobs(params) if callable(self.subjobs) else list(self.subjobs)
        names = [s.name for s in built]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"job {self.name}: sub-job names repeat: {', '.join(duplicated)}")
        return built

    def resolved_inputs(self, params: dict[str, Any]) -> list[str]:
        return [format_path(p, params) for p in self.inputs]


@dataclass
class RunRecord:
    """What the hooks see of a run: one job with one set of resolved params."""

    run_id: str
    job: str
    params: dict[str, Any]
    manifest_path: str
    status: str = "pending"
    subjobs: dict[str, dict[str, Any]] = field(default_factory=dict)


def format_path(template: str, params: Mapping[str, Any]) -> str:
    """Fill a path template with params; a missing key is a clear error."""
    try:
        return template.format(**{k: _path_value(v) for k, v in params.items()})
    except KeyError as err:
        raise ValueError(f"path template {template!r} names {err.args[0]!r}, which is not a param") from None


def _path_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return value
