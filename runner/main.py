"""The latentrun command line: ``python runner/main.py`` or ``latentrun``.

Exit codes: 0 all selected jobs completed; 1 a job failed; 2 the command
cannot run (unknown job, bad ``--set``, missing inputs: nothing ran);
130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # `python runner/main.py`: put the repository root (not runner/) first on sys.path.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any, Sequence  # noqa: E402

from runner import pluginmanager  # noqa: E402
from runner.console import console, listing_tables, start_log, summary_table  # noqa: E402
from runner.executor import REPO_ROOT, ExecOptions, Executor, LocalExecutor  # noqa: E402
from runner.jobs import ParamError  # noqa: E402
from runner.plan import PlanError, build_plan, parse_sets, validate  # noqa: E402
from runner.workspace import Workspace, WorkspaceError  # noqa: E402

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentrun", description="Run interpretability jobs on causal language models.")
    p.add_argument("--jobs", nargs="+", default=[], metavar="JOB", help="jobs (or job groups) to run, in order")
    p.add_argument("--workspace_path", help="workspace root (transformers/, datasets/, experiments/)")
    p.add_argument("--output_path", help="also write the whole run's output to <output_path>/<timestamp>.txt")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job param; KEY=a,b,c sweeps a scalar param (one run per value)")
    p.add_argument("--subjobs", default="", help="comma-separated sub-jobs to run (the others are not run)")
    p.add_argument("--list", action="store_true", help="list plugins and jobs, then exit")
    p.add_argument("--json", action="store_true", help="with --list or --dry-run: print JSON")
    p.add_argument("--dry-run", action="store_true", help="resolve and validate everything, print the plan, run nothing")
    p.add_argument("--force", action="store_true", help="rerun sub-jobs even if an earlier run completed them")
    p.add_argument("--inline", action="store_true", help="run sub-jobs in this process instead of one process each")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed job")
    p.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="where sub-jobs run: this machine, or a SLURM cluster through submitit")
    p.add_argument("--executor-param", dest="executor_params", action="append", default=[], metavar="KEY=VALUE",
                   help="cluster option: partition, time (min), gpus_per_task, mem_gb, cpus_per_task, "
                        "array_parallelism, account, qos, constraint, wait, cluster (slurm|local)")
    p.add_argument("--shutdown_after_experiment", action="store_true", help="shut the machine down when done")
    p.add_argument("--shutdown_command", help="command for --shutdown_after_experiment (default: shutdown -h now)")
    p.add_argument("-p", dest="plugin_flags", action="append", default=[], metavar="no:NAME",
                   help="disable a plugin by name (also LATENTRUN_DISABLE_PLUGINS=a,b)")
    p.add_argument("--trace-plugins", action="store_true", help="print every plugin hook call (LATENTRUN_TRACE_PLUGINS=1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    disabled = [flag.removeprefix("no:") for flag in args.plugin_flags]
    bad_flags = [flag for flag in args.plugin_flags if not flag.startswith("no:")]
    if bad_flags:
        return usage_error(f"-p takes no:NAME to disable a plugin, got {', '.join(bad_flags)}")
    if disabled:  # worker processes load plugins too
        os.environ[pluginmanager.DISABLE_ENV] = ",".join(pluginmanager.disabled_names(disabled))
    registry = pluginmanager.load_plugins(disabled=disabled, trace=args.trace_plugins or None)
    pluginmanager.set_registry(registry)
    for info in registry.failed():
        print(f"warning: plugin {info.name!r} ({info.module}) failed to load: {info.error}", file=sys.stderr)

    if args.list:
        return list_everything(registry, as_json=args.json)
    if not args.jobs:
        return usage_error("nothing to do: pass --jobs JOB [JOB ...] (see --list)")
    if not args.workspace_path:
        return usage_error("--workspace_path is required to run jobs")
    jobs = registry.jobs()
    if registry.job_errors:
        return usage_error("\n".join(registry.job_errors))
    try:
        workspace = Workspace.open(args.workspace_path)
        runs = build_plan(args.jobs, jobs, workspace, parse_sets(args.sets),
                          only_subjobs=[s for s in args.subjobs.split(",") if s])
        # On a cluster the GPUs are the cluster's: the job's resource request carries the device map.
        validate(runs, workspace, jobs, check_devices=args.executor == "local")
        executor = make_executor(args, workspace, registry, argv)
    except (PlanError, WorkspaceError, ParamError) as err:
        problems = err.problems if isinstance(err, PlanError) else [str(err)]
        return usage_error("cannot run:\n" + "\n".join(f"  - {p}" for p in problems))

    if args.dry_run:
        return print_plan(runs, workspace, as_json=args.json)
    if args.output_path:
        log = start_log(args.output_path)
        print(f"logging to {log}")
    start = time.monotonic()
    records = executor.execute(runs)
    console().print(summary_table(records))
    print(f"total {time.monotonic() - start:.1f}s")
    registry.pm.hook.latentrun_session_finish(runs=records, options=vars(args))
    if executor.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(r.status not in ("completed", "submitted") for r in records) else 0


def make_executor(args: argparse.Namespace, workspace: Workspace, registry: pluginmanager.Registry,
                  argv: Sequence[str] | None) -> Executor:
    command = "latentrun " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    options = ExecOptions(force=args.force, fail_fast=args.fail_fast, command=command)
    if args.executor == "slurm":
        from runner.cluster import SlurmExecutor, parse_options

        log_folder = Path(args.output_path).expanduser() / "slurm" if args.output_path else None
        return SlurmExecutor(workspace, registry.pm, options, options=parse_options(args.executor_params),
                             log_folder=log_folder)
    if args.executor_params:
        raise ParamError("--executor-param is for --executor slurm")
    return LocalExecutor(workspace, registry.pm, options, inline=args.inline)


def usage_error(message: str) -> int:
    print(f"latentrun: {message}", file=sys.stderr)
    return EXIT_USAGE


def list_everything(registry: pluginmanager.Registry, as_json: bool) -> int:
    jobs = registry.jobs()
    subjobs: dict[str, list[str]] = {}
    for name, job in jobs.items():
        if job.is_group:
            continue
        try:
            subjobs[name] = [s.name for s in job.build_subjobs(job.defaults())]
        except Exception as err:  # listing must survive one job's bug
            subjobs[name] = [f"<cannot build: {err}>"]
    if as_json:
        data: dict[str, Any] = {
            "plugins": [vars(p) | {"traceback": None} for p in registry.plugins],
            "jobs": [{"name": n, "plugin": j.plugin, "description": j.description, "group": j.group,
                      "subjobs": subjobs.get(n, []), "params": j.defaults(), "device_map": j.device_map.to_json(),
                      "inputs": j.inputs} for n, j in jobs.items()],
            "errors": registry.job_errors,
        }
        print(json.dumps(data, indent=2, default=str))
    else:
        for table in listing_tables(registry.plugins, jobs, subjobs):
            console().print(table)
        for error in registry.job_errors:
            print(f"error: {error}", file=sys.stderr)
    return EXIT_USAGE if registry.job_errors else 0


def preview_placement(run: Any, workspace: Workspace) -> dict[str, Any] | None:
    """Module placement of the run's model on the meta device, computed in a child process
    (the runner imports no torch); only for placements other than one device."""
    dm = run.device_map
    if isinstance(dm.placement, str) and dm.placement not in ("auto", "balanced"):
        return None
    model_dirs = [workspace.path(p) for p in run.job.resolved_inputs(run.params) if p.startswith("transformers/")]
    model_dirs = [d for d in model_dirs if (d / "config.json").exists()]
    if not model_dirs:
        return None
    command = [sys.executable, "-m", "models.placement", str(model_dirs[0]),
               "--device-map", json.dumps(dm.placement) if isinstance(dm.placement, dict) else dm.placement,
               "--dtype", str(run.params.get("dtype") or "bfloat16")]
    if dm.max_memory:
        command += ["--max-memory", json.dumps(dict(dm.max_memory))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout)


def print_plan(runs: list, workspace: Workspace, as_json: bool) -> int:
    plan = [{"run_id": r.run_id, "job": r.job.name, "plugin": r.job.plugin, "params": r.params,
             "device_map": r.device_map.to_json(), "placement": preview_placement(r, workspace),
             "subjobs": [{"name": s.name, "function": s.subjob.function, "reads": s.reads, "writes": s.writes}
                         for s in r.subjobs]} for r in runs]
    if as_json:
        print(json.dumps(plan, indent=2, default=str))
        return 0
    for run in plan:
        print(f"run {run['run_id']}  ({run['plugin']}; device map {run['device_map']['placement']})")
        print(f"  params: {json.dumps(run['params'], default=str)}")
        placement = run["placement"] or {}
        if "error" in placement:
            print(f"  placement: cannot compute ({placement['error']})")
        for device, modules in placement.get("summary", {}).items():
            print(f"  placement {device}: {', '.join(modules)}")
        for sub in run["subjobs"]:
            print(f"  - {sub['name']}  ({sub['function']})")
            for path in sub["reads"]:
                print(f"      reads  {path}")
            for path in sub["writes"]:
                print(f"      writes {path}")
    print(f"dry run: {len(plan)} run(s), nothing executed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
