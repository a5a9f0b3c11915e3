"""Plugin discovery: every entry point of group ``latentrun`` becomes a plugin.

Like pytest and datasette: plugins are found through entry points, a broken
plugin is reported (name + error) without stopping the others, a plugin can
be switched off by name (``-p no:NAME`` or ``LATENTRUN_DISABLE_PLUGINS=a,b``),
and every hook call can be traced (``--trace-plugins`` or
``LATENTRUN_TRACE_PLUGINS=1``).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from importlib.metadata import entry_points
from typing import Iterable

import pluggy

from runner import hookspecs
from runner.jobs import Job

DISABLE_ENV = "LATENTRUN_DISABLE_PLUGINS"
TRACE_ENV = "LATENTRUN_TRACE_PLUGINS"
# Plugins the runner itself registers (not entry points); they can be disabled too.
INTERNAL_PLUGINS = {"shutdown": "runner.shutdown"}


@dataclass
class PluginInfo:
    """What ``--list`` shows of one plugin."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    status: str = "loaded"  # loaded | disabled | failed
    error: str = ""
    traceback: str = ""


@dataclass
class Registry:
    """The loaded plugin manager plus what was learned while loading it."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    _jobs: dict[str, Job] | None = None
    job_errors: list[str] = field(default_factory=list)
    trace: bool = False

    def jobs(self) -> dict[str, Job]:
        """All jobs by name; duplicate names and failing hooks go to ``job_errors``."""
        if self._jobs is None:
            self._jobs = self._collect_jobs()
        return self._jobs

    def _collect_jobs(self) -> dict[str, Job]:
        # Each plugin is called on its own so that one plugin's bug hides no other's jobs.
        jobs: dict[str, Job] = {}
        for impl in self.pm.hook.latentrun_jobs.get_hookimpls():
            name = self.pm.get_name(impl.plugin) or "?"
            try:
                offered = list(impl.function() or [])
            except Exception as err:
                self._mark_failed(name, f"latentrun_jobs() raised {type(err).__name__}: {err}")
                continue
            if self.trace:
                print(f"[trace] latentrun_jobs -> {name}: {len(offered)} job(s)", file=sys.stderr)
            for job in offered:
                job.plugin = name
                if job.name in jobs:
                    self.job_errors.append(
                        f"job {job.name!r} is offered by two plugins: {jobs[job.name].plugin!r} and {name!r}; "
                        f"disable one with -p no:{name}"
                    )
                    continue
                jobs[job.name] = job
        return dict(sorted(jobs.items()))

    def _mark_failed(self, name: str, error: str) -> None:
        for info in self.plugins:
            if info.name == name:
                info.status, info.error = "failed", error

    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.status == "failed"]


def disabled_names(extra: Iterable[str] = ()) -> set[str]:
    """Names switched off by ``-p no:NAME`` and by the environment variable."""
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    return names | set(extra)


def load_plugins(disabled: Iterable[str] = (), trace: bool | None = None) -> Registry:
    """Build the plugin manager: hook specs, internal plugins, entry points."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm=pm)
    off = disabled_names(disabled)

    own_version = _version("latentrun")
    for name, module in INTERNAL_PLUGINS.items():
        _register(registry, name, module, lambda module=module: importlib.import_module(module),
                  distribution="latentrun", version=own_version, disabled=name in off)

    seen: set[str] = set()
    for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        _register(registry, ep.name, ep.value, ep.load,
                  distribution=dist.metadata["Name"] if dist else "",
                  version=dist.version if dist else "", disabled=ep.name in off)

    registry.trace = trace if trace is not None else os.environ.get(TRACE_ENV, "") not in ("", "0")
    if registry.trace:
        enable_tracing(pm)
    return registry


def _register(registry: Registry, name: str, module: str, load, *, distribution: str = "",
              version: str = "", disabled: bool = False) -> None:
    info = PluginInfo(name=name, module=module, distribution=distribution, version=version)
    registry.plugins.append(info)
    if disabled:
        info.status = "disabled"
        registry.pm.set_blocked(name)
        return
    try:
        plugin = load()
        registry.pm.register(plugin, name=name)
    except Exception as err:  # ImportError, SyntaxError, a bad hookimpl signature...
        info.status = "failed"
        info.error = f"{type(err).__name__}: {err}"
        info.traceback = traceback.format_exc()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def enable_tracing(pm: pluggy.PluginManager) -> None:
    """Print every hook call, its implementations and results to stderr."""

    def before(hook_name: str, hook_impls, kwargs) -> None:
        names = ", ".join(pm.get_name(i.plugin) or "?" for i in hook_impls)
        print(f"[trace] {hook_name}({', '.join(kwargs)}) -> [{names}]", file=sys.stderr)

    def after(outcome, hook_name: str, hook_impls, kwargs) -> None:
        exc = outcome.exception
        result = f"raised {exc!r}" if exc else f"returned {len(outcome.get_result() or [])} result(s)"
        print(f"[trace] {hook_name} {result}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


_REGISTRY: Registry | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (for ``models/`` and sub-job code).

    Honours ``LATENTRUN_DISABLE_PLUGINS``; the CLI passes its ``-p no:``
    names to worker processes through that variable.
    """
    return get_registry().pm


def get_registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_plugins()
    return _REGISTRY


def set_registry(registry: Registry) -> None:
    """Make ``registry`` the process-wide one (the CLI does, after parsing flags)."""
    global _REGISTRY
    _REGISTRY = registry
