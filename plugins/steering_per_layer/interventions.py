"""Interventions as the seed names them, checked as job params and mapped onto ``models.steering.steer``.

==========================  =====================================  ==========================
param                       values (the seed's spelling)           ``steer(...)`` argument
==========================  =====================================  ==========================
modification_mode           FEATURE_ADDITION / FEATURE_ABLATION /  ``mode`` = addition /
                            FEATURE_AMPLIFICATION                  ablation / amplification
direction_normalization_mode UNIT_VECTOR /                         ``normalization`` = unit /
                            SCALE_WITH_OVERALL_MAGNITUDE           overall_magnitude (+ ``overall_mean``)
token_modification_mode     ALL_TOKENS / LAST_TOKEN                ``positions`` = all / last
hook_point                  post / pre / attn / mlp, or several    ``point`` (one ``steer``
                            joined by ``+`` (``pre+attn+mlp``)     context per point)
layer_indices               list of ints, DESIGN.md's numbering    ``layers``
direction_layer_offset      int (default 0): layer k is steered    ``directions``
                            with the direction of layer k + offset
scale                       float                                  ``scale``
direction_source            candidate_directions / linear_probes   which directions file
==========================  =====================================  ==========================

Bad values fail when the job is planned (``Param(choices=...)``, and
:meth:`Intervention.from_params` in the job's sub-job builder); a layer the
model does not have, or a directions file made for another model (its sidecar's
``model``, ``hidden_size`` or Huginn ``num_steps``), fails in :func:`preflight`,
before the model is loaded. Nothing here imports torch at import time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from runner.jobs import Param

MODIFICATION_MODES = {"FEATURE_ADDITION": "addition", "FEATURE_ABLATION": "ablation",
                      "FEATURE_AMPLIFICATION": "amplification"}
NORMALIZATIONS = {"UNIT_VECTOR": "unit", "SCALE_WITH_OVERALL_MAGNITUDE": "overall_magnitude"}
TOKEN_MODES = {"ALL_TOKENS": "all", "LAST_TOKEN": "last"}
HOOK_POINTS = ("post", "pre", "attn", "mlp")
POINT_SEPARATOR = "+"
# Allowed hook_point values: one point, or several in HOOK_POINTS' order (pre+attn+mlp), checked at --set.
HOOK_POINT_CHOICES = tuple(POINT_SEPARATOR.join(p for k, p in enumerate(HOOK_POINTS) if mask >> k & 1)
                           for mask in sorted(range(1, 16), key=lambda m: (bin(m).count("1"), m)))
SOURCES = ("candidate_directions", "linear_probes")

CANDIDATE_FILE = "experiments/candidate_directions/{model}/{directions_dataset}/{directions_mode}{directions_variant}.safetensors"
PROBES_FILE = ("experiments/linear_probes/{model}/{directions_dataset}/{directions_mode}{directions_variant}/"
               "directions.safetensors")


class InterventionError(ValueError):
    """An intervention that cannot run on this model with this directions file (raised before loading)."""


def intervention_params(layer_indices: list[int] | None = None, scale: float = 1.0, **defaults: Any) -> dict[str, Param]:
    """The intervention params of a job; ``defaults`` override the other default values."""
    params = {
        "with_intervention": Param(False, "steer the model (and compare with the unsteered run)"),
        "modification_mode": Param("FEATURE_ADDITION", "FEATURE_ADDITION h+s*u; FEATURE_ABLATION h-(h.u)u; "
                                   "FEATURE_AMPLIFICATION h+s*(h.u)u", choices=tuple(MODIFICATION_MODES)),
        "direction_normalization_mode": Param("UNIT_VECTOR", "UNIT_VECTOR: u; SCALE_WITH_OVERALL_MAGNITUDE: "
                                              "||overall mean|| * u", choices=tuple(NORMALIZATIONS)),
        "token_modification_mode": Param("ALL_TOKENS", "tokens steered", choices=tuple(TOKEN_MODES)),
        "hook_point": Param("post", "post: block output; pre: block input; attn / mlp: sub-module outputs; "
                            "several joined by '+' (pre+attn+mlp)", choices=HOOK_POINT_CHOICES),
        "layer_indices": Param(list(layer_indices or [0]), "layers to steer, DESIGN.md's numbering "
                               "(Huginn: flat index over prelude, core x steps, coda)", type=list),
        "direction_layer_offset": Param(0, "steer layer k with the direction of layer k + offset (-1: the "
                                        "direction of the residual stream a block reads, for pre/attn/mlp)"),
        "scale": Param(float(scale), "s of the steering formulas"),
        "direction_source": Param("candidate_directions", "candidate_directions (mmlu_pro_save_candidate_"
                                  "directions) or linear_probes (train_linear_probes)", choices=SOURCES),
        "directions_dataset": Param("mmlu-pro-3000samples", "data set the directions were computed on"),
        "directions_mode": Param("FIRST_ANSWER_TOKEN", "mode the directions were computed with",
                                 choices=("FIRST_ANSWER_TOKEN", "ALL_TOKENS")),
    }
    for key, value in defaults.items():
        old = params[key]
        params[key] = Param(value, old.help, old.type, old.choices)
    return params


def directions_file(params: Mapping[str, Any]) -> str:
    """Workspace-relative template of the directions file the intervention reads."""
    return CANDIDATE_FILE if params["direction_source"] == "candidate_directions" else PROBES_FILE


@dataclass(frozen=True)
class Intervention:
    """A checked intervention; :meth:`steer` applies it to a loaded model."""

    modification_mode: str
    direction_normalization_mode: str
    token_modification_mode: str
    hook_point: str
    layer_indices: tuple[int, ...]
    scale: float
    direction_source: str
    direction_layer_offset: int = 0

    @property
    def hook_points(self) -> tuple[str, ...]:
        return tuple(self.hook_point.split(POINT_SEPARATOR))

    @property
    def direction_layers(self) -> tuple[int, ...]:
        """The layers whose directions are read (``layer_indices`` shifted by ``direction_layer_offset``)."""
        return tuple(k + self.direction_layer_offset for k in self.layer_indices)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Intervention:
        for key, allowed in (("modification_mode", MODIFICATION_MODES), ("direction_normalization_mode", NORMALIZATIONS),
                             ("token_modification_mode", TOKEN_MODES), ("direction_source", SOURCES)):
            if params[key] not in allowed:
                raise InterventionError(f"{key}={params[key]!r} is not allowed; choose one of: {', '.join(allowed)}")
        if params["hook_point"] not in HOOK_POINT_CHOICES:
            raise InterventionError(f"hook_point={params['hook_point']!r} is not allowed: use one of "
                                    f"{', '.join(HOOK_POINTS)}, or several joined by {POINT_SEPARATOR!r} in that "
                                    "order (e.g. pre+attn+mlp)")
        layers = params["layer_indices"]
        layers = [layers] if isinstance(layers, (int, str)) else list(layers)
        try:
            indices = tuple(int(k) for k in layers)
        except (TypeError, ValueError):
            raise InterventionError(f"layer_indices={layers!r}: expected integers") from None
        if not indices:
            raise InterventionError("layer_indices is empty: name at least one layer to steer")
        try:
            scale = float(params["scale"])
        except (TypeError, ValueError):
            raise InterventionError(f"scale={params['scale']!r}: expected a number") from None
        try:
            offset = int(params.get("direction_layer_offset", 0) or 0)
        except (TypeError, ValueError):
            raise InterventionError(f"direction_layer_offset={params['direction_layer_offset']!r}: expected an "
                                    "integer") from None
        return cls(params["modification_mode"], params["direction_normalization_mode"],
                   params["token_modification_mode"], str(params["hook_point"]), indices, scale,
                   params["direction_source"], offset)

    def describe(self) -> str:
        shift = f" (directions of layers {list(self.direction_layers)})" if self.direction_layer_offset else ""
        return (f"{self.modification_mode} {self.direction_normalization_mode} {self.token_modification_mode} "
                f"{self.hook_point} layers={list(self.layer_indices)}{shift} scale={self.scale:g} "
                f"({self.direction_source})")

    def tag_parts(self) -> list[str]:
        """The parts of an output folder name that identify this intervention."""
        parts = [self.direction_source, self.modification_mode, self.direction_normalization_mode,
                 self.token_modification_mode, self.hook_point,
                 "layers=" + "-".join(str(k) for k in self.layer_indices)]
        if self.direction_layer_offset:
            parts.append(f"direction_offset={self.direction_layer_offset}")
        return parts + [f"scale={self.scale:g}"]

    def steer_kwargs(self, directions: Mapping[str, Any], point: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``models.steering.steer`` for one hook point, from an opened directions file."""
        if point is None:
            if len(self.hook_points) != 1:
                raise InterventionError(f"hook_point={self.hook_point!r} has several points: pass one")
            point = self.hook_point
        units = directions["unit_direction"]
        source = dict(zip(self.layer_indices, self.direction_layers))
        kwargs: dict[str, Any] = {
            "layers": list(self.layer_indices),
            "directions": {k: units[source[k]] for k in self.layer_indices},
            "mode": MODIFICATION_MODES[self.modification_mode],
            "scale": self.scale,
            "normalization": NORMALIZATIONS[self.direction_normalization_mode],
            "point": point,
            "positions": TOKEN_MODES[self.token_modification_mode],
        }
        if kwargs["normalization"] == "overall_magnitude":
            kwargs["overall_mean"] = {k: directions["overall_mean"][source[k]] for k in self.layer_indices}
        return kwargs

    def steer(self, model: Any, directions: Mapping[str, Any], **extra: Any) -> Any:
        """The steering context manager on ``model``: one ``steer`` per hook point, all removed on exit."""
        from models.steering import steer

        contexts = []
        for point in self.hook_points:
            kwargs = self.steer_kwargs(directions, point)
            kwargs.update(extra)
            contexts.append(steer(model, **kwargs))
        return contexts[0] if len(contexts) == 1 else _Together(contexts)


class _Together:
    """Several steering contexts entered and left as one (every hook removed on exit, also on errors)."""

    def __init__(self, contexts: list[Any]) -> None:
        self.contexts = contexts
        self._stack: Any = None

    def __enter__(self) -> _Together:
        from contextlib import ExitStack

        with ExitStack() as stack:  # a context that fails to enter exits the ones already entered
            for context in self.contexts:
                stack.enter_context(context)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


def model_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.exists():
        raise InterventionError(f"{path} not found: cannot check the intervention against the model")
    return json.loads(path.read_text())


def _hidden_size(config: Mapping[str, Any]) -> int | None:
    for key in ("hidden_size", "n_embd", "d_model"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def num_layers(config: Mapping[str, Any], num_steps: int | None) -> int | None:
    """Blocks per forward in DESIGN.md's numbering, from config.json alone (Huginn unrolled)."""
    if "n_layers_in_recurrent_block" in config:
        steps = int(num_steps if num_steps is not None else config.get("mean_recurrence", 32))
        return (int(config.get("n_layers_in_prelude", 0)) + int(config["n_layers_in_recurrent_block"]) * steps
                + int(config.get("n_layers_in_coda", 0)))
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def preflight(intervention: Intervention, model_name: str, model_dir: Path, directions_path: Path,
              num_steps: int | None = None) -> dict[str, Any]:
    """Check layers and the directions file against the model's config.json; return the sidecar.

    Raises one :class:`InterventionError` naming every problem; loads no model.
    """
    config = model_config(model_dir)
    problems: list[str] = []
    n = num_layers(config, num_steps)
    if n is not None:
        bad = [k for k in intervention.layer_indices if not 0 <= k < n]
        bad_sources = [k for k in intervention.direction_layers if not 0 <= k < n and k not in bad]
        if bad_sources:
            problems.append(f"direction layers {bad_sources} (layer_indices + direction_layer_offset="
                            f"{intervention.direction_layer_offset}) out of range: {model_name} has layers 0..{n - 1}")
        if bad:
            problems.append(f"layer_indices {bad} out of range: {model_name} has layers 0..{n - 1}"
                            + (f" at num_steps={num_steps if num_steps is not None else config.get('mean_recurrence')}"
                               if "n_layers_in_recurrent_block" in config else "")
                            + " (override with --set layer_indices=...)")
    directions_path = Path(directions_path)
    sidecar_file = directions_path.with_suffix(".json")
    if not directions_path.exists():
        problems.append(f"directions file {directions_path} not found (run the job that writes it: "
                        f"{'mmlu_pro_save_candidate_directions' if intervention.direction_source == 'candidate_directions' else 'train_linear_probes'})")
        sidecar: dict[str, Any] = {}
    elif not sidecar_file.exists():
        problems.append(f"{sidecar_file} not found: cannot tell which model {directions_path.name} was made for")
        sidecar = {}
    else:
        sidecar = json.loads(sidecar_file.read_text())
        if sidecar.get("model") not in (None, model_name):
            problems.append(f"{directions_path} was made for model {sidecar.get('model')!r}, not {model_name!r}")
        hidden = _hidden_size(config)
        if sidecar.get("hidden_size") is not None and hidden is not None and int(sidecar["hidden_size"]) != hidden:
            problems.append(f"{directions_path} has hidden size {sidecar['hidden_size']}, {model_name} has {hidden}")
        if "n_layers_in_recurrent_block" in config and sidecar.get("num_steps") is not None:
            steps = int(num_steps if num_steps is not None else config.get("mean_recurrence", 32))
            if int(sidecar["num_steps"]) != steps:
                problems.append(f"{directions_path} was made with num_steps={sidecar['num_steps']}, "
                                f"this run uses {steps}: the flat layer indices differ")
        keys = {e.get("key") for e in sidecar.get("layers", []) if isinstance(e, Mapping)}
        missing = [k for k in intervention.direction_layers if keys and k not in keys]
        if missing and not any("out of range" in p for p in problems):
            problems.append(f"{directions_path} has no direction for layer(s) {missing}")
    if problems:
        raise InterventionError("intervention check failed before loading the model:\n  - " + "\n  - ".join(problems))
    return sidecar


def read_directions(path: str | Path, layers: Any) -> dict[str, dict[int, Any]]:
    """``{"unit_direction": {layer: Tensor}, "overall_mean": {...}}`` of ``layers`` from a directions file."""
    from plugins.common.directions_format import load_directions

    stored = load_directions(path)
    out: dict[str, dict[int, Any]] = {"unit_direction": {}, "overall_mean": {}}
    for layer in layers:
        for kind in out:
            if int(layer) in stored.get(kind, {}):
                out[kind][int(layer)] = stored[kind][int(layer)]
        if int(layer) not in out["unit_direction"]:
            raise InterventionError(f"{path} has no unit_direction for layer {layer}")
    return out
