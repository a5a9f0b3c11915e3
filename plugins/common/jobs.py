"""Entry point ``lirefs_data``: the ``import_lirefs`` job.

``python runner/main.py --jobs import_lirefs --set zip_path=/path/to/dataset.zip --workspace_path W``
extracts the published LiReFs ``dataset.zip`` into ``W/datasets/lirefs/`` as
it is (see :func:`plugins.common.lirefs.import_dataset_zip`) and checks the
schema of ``mmlu-pro-3000samples.json`` if the archive holds it. Importing
this module loads neither torch nor ``models``.
"""

from __future__ import annotations

from runner.hookspecs import hookimpl
from runner.jobs import Job, Param, SubJob

IMPORT_RECORD = "experiments/import_lirefs/import.json"


def import_zip(ctx) -> None:
    """Sub-job: extract the archive, schema-check the main file, record what was imported."""
    import hashlib
    from pathlib import Path

    from plugins.common.lirefs import LIREFS_FILE, load_lirefs, import_dataset_zip
    from runner.atomic import write_json

    zip_path = ctx.params.get("zip_path")
    if not zip_path:
        raise ValueError("set the archive: --set zip_path=/path/to/dataset.zip")
    zip_path = Path(zip_path).expanduser()
    if not zip_path.is_absolute():
        zip_path = Path.cwd() / zip_path
    target = import_dataset_zip(zip_path, ctx.workspace.root, overwrite=bool(ctx.params.get("overwrite")))
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    record = {"zip_path": str(zip_path), "sha256": hashlib.sha256(zip_path.read_bytes()).hexdigest(),
              "target": str(target), "files": files}
    main = ctx.workspace.root / LIREFS_FILE
    if main.exists():
        items = load_lirefs(main)  # raises LiReFsSchemaError listing every bad entry
        record["entries"] = len(items)
        record["reasoning"] = sum(item.label == "reasoning" for item in items)
        record["memorizing"] = len(items) - record["reasoning"]
        ctx.logger.info("imported %d files; %s: %d entries (%d reasoning, %d memorizing)", len(files),
                        LIREFS_FILE, record["entries"], record["reasoning"], record["memorizing"])
    else:
        ctx.logger.warning("imported %d files; the archive has no %s", len(files), LIREFS_FILE)
    write_json(ctx.writes[0], record)


@hookimpl
def latentrun_jobs() -> list[Job]:
    return [
        Job(
            name="import_lirefs",
            description="Import the published LiReFs dataset.zip into W/datasets/lirefs/",
            params={
                "zip_path": Param(default="", help="path of the LiReFs dataset.zip", type=str),
                "overwrite": Param(default=False, help="replace an existing datasets/lirefs/", type=bool),
            },
            subjobs=[SubJob("extract", "plugins.common.jobs:import_zip", writes=[IMPORT_RECORD])],
        )
    ]
