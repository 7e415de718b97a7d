"""The scores folder: what `tfbind score` (and `tfbind variants`) leave in OUT, and how to read it back.

    OUT/_SCORE.json            the run's settings (runs, input, outputs, ISM dtype); a re-run must match them
    OUT/<shard>.parquet        one scored shard each, written whole by the actor that scored it
    OUT/_done/<shard>.json     its marker, written after the scores: a shard is finished when both exist
    OUT/errors/_<shard>.parquet  rows skipped with --on-bad-rows skip (id, error)
    OUT/_MANIFEST.json         every shard's rows and bad rows, once no shard is left

Names starting with "_" stay out of `pyarrow.parquet.read_table(OUT)`, which reads the scores as one
dataset. Markers are one object per shard, so the protocol works where objects cannot be appended to.
This module is the one owner of these names: the service writes through it, readers (motif discovery,
tracks) read through it.
"""
from __future__ import annotations

import json
from pathlib import PurePosixPath

from tfbind_dist.errors import DataError
from tfbind_dist.storage import AnyPath, as_path, remove_stale_temps, write_text_atomic

SETTINGS = "_SCORE.json"
DONE = "_done"
MANIFEST = "_MANIFEST.json"
ERRORS = "errors"


def shard_name(path) -> str:
    """A shard's file name, which its scores and marker share."""
    return PurePosixPath(str(path).rstrip("/")).name


def check_settings(out_dir: AnyPath, settings: dict) -> None:
    """Record the settings in a new scores folder; refuse one that holds a run with other settings."""
    path = out_dir / SETTINGS
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise DataError(f"{out_dir} holds a scoring run with other settings ({', '.join(diff)}); use another --out")
    else:
        write_text_atomic(path, json.dumps(settings, indent=1))


def remove_stale(out_dir: AnyPath) -> None:
    """Temp files that this host's killed writers left in the scores and errors folders."""
    for folder in (out_dir, out_dir / ERRORS):
        remove_stale_temps(folder)


def scores_path(out_dir: AnyPath, shard: str) -> AnyPath:
    return out_dir / shard_name(shard)


def errors_path(out_dir: AnyPath, shard: str) -> AnyPath:
    return out_dir / ERRORS / f"_{shard_name(shard)}"


def mark_done(out_dir: AnyPath, record: dict) -> None:
    """The marker of a shard whose scores are written (`record` holds shard, rows, bad_rows, actor, seconds)."""
    write_text_atomic(out_dir / DONE / f"{record['shard']}.json", json.dumps(record))


def finished(out_dir: AnyPath) -> set[str]:
    """Names of the shards whose marker and scores both exist (one listing of each folder)."""
    done = out_dir / DONE
    if not done.is_dir():
        return set()
    outputs = {p.name for p in out_dir.iterdir()}
    return {p.name[:-len(".json")] for p in done.iterdir() if p.name.endswith(".json")} & outputs


def write_manifest(out_dir: AnyPath, shards) -> None:
    """OUT/_MANIFEST.json from the markers of `shards` (paths or names), once every one is done."""
    records = [json.loads((out_dir / DONE / f"{shard_name(s)}.json").read_text()) for s in shards]
    write_text_atomic(out_dir / MANIFEST, json.dumps({
        "rows": sum(r["rows"] for r in records), "bad_rows": sum(r["bad_rows"] for r in records),
        "shards": [{k: r[k] for k in ("shard", "rows", "bad_rows")} for r in records]}, indent=1))


def scored_shards(out_dir) -> tuple[dict, list[tuple]]:
    """A scores folder's settings (`runs`, `input`, `outputs`) and its (scores file, input shard) pairs,
    one per finished shard, for tools that read scores next to the sequences they came from."""
    out_dir = as_path(out_dir)
    path = out_dir / SETTINGS
    if not path.exists():
        raise DataError(f"{out_dir}: not a `tfbind score` output (no {SETTINGS})")
    settings = json.loads(path.read_text())
    names = sorted(finished(out_dir))
    if not names:
        raise DataError(f"{out_dir}: no shard has finished scoring yet")
    input_dir = as_path(settings["input"])
    return settings, [(out_dir / name, input_dir / name) for name in names]
