"""The hook specifications: the only API a latentrun plugin implements.

A plugin is a module (or object) registered under the entry-point group
``latentrun``. It implements any of the hooks below with the ``hookimpl``
marker::

    # my_plugin.py  (entry point:  [project.entry-points.latentrun] my_plugin = "my_plugin")
    from runner.hookspecs import hookimpl
    from runner.jobs import Job, SubJob

    @hookimpl
    def latentrun_jobs():
        return [Job(name="hello", description="Say hello into the workspace",
                    params={"greeting": "hi"},
                    subjobs=lambda p: [SubJob("write", "my_plugin:write",
                                              writes=["experiments/hello/{greeting}.txt"])])]

The entry-point module must stay light: no ``torch`` and no ``models`` at
import time, so that ``latentrun --list`` is fast however many plugins exist.
Import heavy things inside the sub-job functions.

Hook calls can be traced with ``--trace-plugins`` or ``LATENTRUN_TRACE_PLUGINS=1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    from runner.jobs import Job, RunRecord, SubJob

PROJECT = "latentrun"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def latentrun_jobs() -> list[Job]:
    """Return the jobs this plugin offers.

    Called once per process. Building a ``Job`` must be cheap: sub-jobs are
    produced later, from the resolved params, by ``Job.subjobs`` and must not
    load a model or read data beyond small configs. Two plugins returning a
    job with the same name is an error that names both plugins.

    Example::

        @hookimpl
        def latentrun_jobs():
            return [Job(name="count_tokens", description="Count tokens of a data set",
                        params={"dataset": "lirefs"}, subjobs=build_count_tokens)]
    """


@hookspec
def latentrun_model_adapters() -> list[Any]:
    """Return model adapters that teach ``models/`` a new architecture.

    Each adapter follows ``models.layers.ModelAdapter``: it says whether it
    matches a loaded model and lists that model's residual-stream blocks in
    the one layer numbering (``embed``, then blocks 0..n-1 in visiting
    order) with their hook points. ``models.layers`` asks every plugin
    through this hook before falling back to its built-in adapters, so a
    plugin's adapter wins for the models it matches.

    Example::

        @hookimpl
        def latentrun_model_adapters():
            from my_arch.adapter import MyArchAdapter   # heavy import inside the hook
            return [MyArchAdapter()]
    """


@hookspec
def latentrun_icm_testbeds() -> list[Any]:
    """Return testbeds (claim formats and consistency rules) for the ``icm_label`` job.

    Each item is a ``plugins.icm_label.testbeds.Testbed`` or a dict of its
    fields: ``name``, ``description``, ``template`` (formatted with
    ``{question}``, ``{choice}``, ``{choice_2}``, ending where the label word
    follows), ``key`` (how a claim's consistency key is derived from its own
    text: ``normalised_choice``, ``answer``, ``ordered_pair``, ``text`` or
    ``field:<column>`` — never from gold labels) and the rules
    ``equal_keys_agree``, ``different_keys_not_both_true``,
    ``different_keys_not_both_false``; optional ``true_word``/``false_word``,
    ``aliases``. ``--set testbed=<name>`` then selects it. A name may not
    repeat a built-in one. See docs/plugins/icm_label.md.

    Example::

        @hookimpl
        def latentrun_icm_testbeds():
            return [{"name": "capitals", "description": "Is X the capital of Y?",
                     "template": "Question: {question}\nClaim: {choice}\nI think this claim is ",
                     "key": "normalised_choice", "equal_keys_agree": True,
                     "different_keys_not_both_true": True}]
    """


@hookspec
def latentrun_job_start(job: Job, run: RunRecord) -> None:
    """Called in the runner process before the first sub-job of a run starts.

    ``run.run_id``, ``run.params`` and ``run.manifest_path`` say which run it is.
    """


@hookspec
def latentrun_subjob_start(job: Job, subjob: SubJob, run: RunRecord) -> None:
    """Called before a sub-job runs (not when it is skipped as completed)."""


@hookspec
def latentrun_subjob_finish(job: Job, subjob: SubJob, run: RunRecord, status: str) -> None:
    """Called after a sub-job ended; ``status`` is ``completed``, ``failed``,
    ``skipped`` or ``interrupted``."""


@hookspec
def latentrun_job_finish(job: Job, run: RunRecord, status: str) -> None:
    """Called after the last sub-job of a run; ``status`` is ``completed``,
    ``failed`` or ``interrupted``. Useful for notifications."""


@hookspec
def latentrun_session_finish(runs: list[RunRecord], options: dict[str, Any]) -> None:
    """Called once after every selected job ran (also when some failed).

    ``options`` holds the CLI options (``shutdown_after_experiment``,
    ``shutdown_command``, ``workspace_path``, ...). The built-in shutdown
    plugin implements ``--shutdown_after_experiment`` with this hook.
    """
