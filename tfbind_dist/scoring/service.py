"""`tfbind score`: genome-scale scoring of Parquet shards on a Ray cluster, resumable shard by shard.

One Ray Data row per pending shard (one block each) -> map_batches(ShardScorer, actor pool).
The actor that takes a shard streams it in batches, scores them, writes OUT/<shard> itself
(temp file + rename on disk, one whole-object upload on object storage) and then the marker
OUT/_done/<shard>.json, and returns one small completion record. The driver keeps the progress
bar and, once every shard is done, writes the OUT/_MANIFEST.json summary; it never holds scores,
so its memory does not grow with the input or the width of the outputs.

A re-run scores only shards without a marker, so an interrupted run (driver, actor or node
killed) completes to exactly the rows of an uninterrupted one. Shards, runs and outputs may
each live on local disk or object storage (gs://, s3://).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from tfbind_dist.data.io import DataError
from tfbind_dist.data.shard import SHARD_MANIFEST, read_shard_manifest
from tfbind_dist.ray_utils import connect
from tfbind_dist.rundir import CONFIG, RunDir, RunDirError
from tfbind_dist.scoring.scorer import INPUT_COLUMNS, normalize_outputs
from tfbind_dist.storage import (as_path, atomic_output, expand, is_remote, open_parquet, remove_stale_temps, storage_env,
                                 write_table_atomic, write_text_atomic)
from tfbind_dist.train.restore import load_model

SETTINGS = "_SCORE.json"
DONE = "_done"  # one marker object per finished shard: works where objects cannot be appended to
MANIFEST = "_MANIFEST.json"  # every finished shard, written by the driver when none is left
ROW_GROUP_ROWS, ROW_GROUP_BYTES = 65_536, 64 << 20  # scored batches are written in row groups of about this size
ERRORS = "errors"  # errors/_<shard>: the leading "_" keeps them out of `pyarrow.parquet.read_table(OUT)`


def _name(path) -> str:
    return PurePosixPath(str(path).rstrip("/")).name


class ShardFailed(Exception):
    """A shard that cannot be scored as a whole (a bad row with --on-bad-rows fail, an unreadable file)."""


class ShardScorer:
    """Ray Data actor: loads every model once, then scores whole shards and writes their outputs."""

    def __init__(self, runs, outputs, out_dir, *, ism_dtype="float16", batch_size=512, on_bad_rows="fail"):
        import socket

        from tfbind_dist.scoring.scorer import load_models

        self.models = load_models(runs)
        self.outputs, self.ism_dtype, self.batch_size = tuple(outputs), ism_dtype, batch_size
        self.out_dir, self.on_bad_rows = as_path(out_dir), on_bad_rows
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        for folder in (self.out_dir, self.out_dir / ERRORS):  # temps of this host's dead attempts
            remove_stale_temps(folder)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.score_shard(shard) for shard in batch.column("shard").to_pylist()])

    def score_shard(self, shard: str) -> dict:
        """Score one shard into OUT/<name>, then mark it done; the completion record (error set if it failed)."""
        started, name = time.perf_counter(), _name(shard)
        record = {"shard": name, "rows": 0, "bad_rows": 0, "error": None, "actor": self.name, "seconds": 0.0}
        try:
            record["rows"], record["bad_rows"] = self._write_scores(shard, name)
        except ShardFailed as err:
            record["error"] = str(err)
            return record
        record["seconds"] = round(time.perf_counter() - started, 3)
        write_text_atomic(self.out_dir / DONE / f"{name}.json", json.dumps(record))
        return record

    def _write_scores(self, shard: str, name: str) -> tuple[int, int]:
        """Score a shard into OUT/<name> (bad rows, when skipped, into errors/_<name>); (rows, bad rows)."""
        with contextlib.ExitStack() as stack:
            try:
                source = stack.enter_context(open_parquet(shard))
            except (OSError, pa.ArrowInvalid) as err:
                raise ShardFailed(f"shard {name}: cannot read as Parquet ({str(err).splitlines()[0]})") from None
            with atomic_output(self.out_dir / name) as tmp:
                try:
                    rows, bad_ids, bad_reasons = self._stream_scores(source, name, tmp)
                except (OSError, pa.ArrowInvalid) as err:
                    raise ShardFailed(f"shard {name}: {str(err).splitlines()[0]} (shard not written)") from None
        if bad_ids:
            write_table_atomic(pa.table({"id": pa.array(bad_ids, pa.int64()), "error": bad_reasons}),
                               self.out_dir / ERRORS / f"_{name}")
        return rows, len(bad_ids)

    def _stream_scores(self, source, name: str, target) -> tuple[int, list[int], list[str]]:
        """Score `source` batch by batch into the Parquet file `target`, in row groups of ~ROW_GROUP_ROWS."""
        from tfbind_dist.scoring.scorer import score_table

        columns = [c for c in source.schema_arrow.names if c in INPUT_COLUMNS]
        score = lambda table: score_table(table, self.models, self.outputs, ism_dtype=self.ism_dtype,  # noqa: E731
                                          pad_to=self.batch_size)
        rows, bad_ids, bad_reasons = 0, [], []
        group, group_rows, group_bytes, writer = [], 0, 0, None
        try:
            for batch in source.iter_batches(batch_size=self.batch_size, columns=columns):
                batch = pa.Table.from_batches([batch])
                scored = score(batch)
                if scored.errors and self.on_bad_rows == "fail":
                    row, reason = scored.errors[0]
                    raise ShardFailed(f"shard {name} row id {batch.column('id')[row].as_py()}: {reason} "
                                      "(shard not written)")
                bad_ids += [batch.column("id")[row].as_py() for row, _ in scored.errors]
                bad_reasons += [reason for _, reason in scored.errors]
                if writer is None:
                    writer = pq.ParquetWriter(target, scored.table.schema, compression="zstd")
                group.append(scored.table)
                rows, group_rows, group_bytes = (rows + scored.table.num_rows, group_rows + scored.table.num_rows,
                                                 group_bytes + scored.table.nbytes)
                if group_rows >= ROW_GROUP_ROWS or group_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(pa.concat_tables(group))
                    group, group_rows, group_bytes = [], 0, 0
            if writer is None:  # a shard without rows still gets its (empty) output
                empty = score(source.schema_arrow.empty_table().select(columns)).table
                writer = pq.ParquetWriter(target, empty.schema, compression="zstd")
            if group:
                writer.write_table(pa.concat_tables(group))
        finally:
            if writer is not None:
                writer.close()
        return rows, bad_ids, bad_reasons


@dataclass
class ScoreSummary:
    rows: int
    shards_written: int
    shards_failed: list[str]
    seconds: float
    per_actor: dict[str, int]


def _input_shards(input_dir, length: int) -> dict[str, int]:
    """{shard path or URL: rows} of a shard directory, checked against the models' sequence length.

    With `_SHARDS.json` (written by `tfbind data shard`) exactly the shards it lists are scored,
    so other files in the folder are left alone, and their row counts come from it (no file is
    opened: cheap on object storage). Without one, every visible Parquet file must be a shard
    (an int64 `id` and `codes` or `sequence`).
    """
    if not input_dir.is_dir():
        raise DataError(f"--input {input_dir}: not a directory of shards (make one with `tfbind data shard`)")
    if (input_dir / SHARD_MANIFEST).exists():
        manifest = read_shard_manifest(input_dir)
        if manifest.get("window") not in (None, length):
            raise DataError(f"{input_dir / SHARD_MANIFEST}: windows of {manifest['window']} bp, but the runs were "
                            f"trained on {length}-bp sequences; re-shard with --window {length}")
        return {str(input_dir / shard["file"]): int(shard["rows"]) for shard in manifest["shards"]}
    files = sorted(p for p in input_dir.glob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        raise DataError(f"{input_dir}: no Parquet shards")
    shards = {}
    for path in files:
        try:
            with open_parquet(path) as meta:
                schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError(f"{path}: cannot read as Parquet ({str(err).splitlines()[0]})") from None
        if "id" not in schema.names or not {"codes", "sequence"} & set(schema.names):
            raise DataError(f"{path}: not a shard (needs an 'id' column and 'codes' or 'sequence'; found "
                            f"{schema.names})")
        if "codes" in schema.names:
            codes_type = schema.field("codes").type
            if pa.types.is_fixed_size_binary(codes_type) and codes_type.byte_width != length:
                raise DataError(f"{path}: field 'codes' holds {codes_type.byte_width}-bp windows, but the runs were "
                                f"trained on {length}-bp sequences")
        shards[str(path)] = rows
    return shards


def expand_runs(runs: list[str]) -> list[str]:
    """--runs as absolute paths or URLs; a quoted pattern (`'gs://b/sweep/*'`) gives the run directories it matches."""
    expanded = []
    for run in runs:
        if any(c in run for c in "*?["):
            matches = [m for m in expand(run) if (as_path(m) / CONFIG).exists()]
            if not matches:
                raise RunDirError(f"--runs {run}: matches no run directory")
            expanded += matches
        else:
            expanded.append(run)
    if not expanded:
        raise ValueError("--runs: name at least one run directory")
    return [str(as_path(r)) for r in expanded]


def check_runs(runs: list[str]) -> int:
    """Every run restorable without starting Ray (config, sequence length, a best checkpoint); their common length."""
    lengths = {}
    for run_path in runs:
        run = RunDir(run_path)
        run.load_config()
        best = run.checkpoints / "best"
        if not best.exists() or not any(p.name.isdigit() for p in best.iterdir()):
            raise RunDirError(f"{run}: no best checkpoint under {best} (has the run finished an evaluation?)")
        lengths[str(run)] = run.sequence_length()
    known = {v for v in lengths.values() if v}
    if len(known) > 1:
        raise DataError(f"--runs: the runs were trained on different sequence lengths {lengths}; score them separately")
    return known.pop() if known else load_model(runs[0]).length


def _finished(out_dir) -> set[str]:
    """Names of the shards whose marker and output both exist (one listing of each folder)."""
    done = out_dir / DONE
    if not done.is_dir():
        return set()
    outputs = {p.name for p in out_dir.iterdir()}
    return {p.name[:-len(".json")] for p in done.iterdir() if p.name.endswith(".json")} & outputs


def scored_shards(out_dir) -> tuple[dict, list[tuple]]:
    """A scoring output's settings (`runs`, `input`, `outputs`) and its (scores file, input shard) pairs,
    one per finished shard, for tools that read scores next to the sequences they came from."""
    out_dir = as_path(out_dir)
    path = out_dir / SETTINGS
    if not path.exists():
        raise DataError(f"{out_dir}: not a `tfbind score` output (no {SETTINGS})")
    settings = json.loads(path.read_text())
    names = sorted(_finished(out_dir))
    if not names:
        raise DataError(f"{out_dir}: no shard has finished scoring yet")
    input_dir = as_path(settings["input"])
    return settings, [(out_dir / name, input_dir / name) for name in names]


def _check_settings(out_dir, settings: dict) -> None:
    path = out_dir / SETTINGS
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise DataError(f"{out_dir} holds a scoring run with other settings ({', '.join(diff)}); use another --out")
    else:
        write_text_atomic(path, json.dumps(settings, indent=1))


def _write_manifest(out_dir, shards: dict[str, int]) -> None:
    """OUT/_MANIFEST.json from the markers, once every input shard is done."""
    records = [json.loads((out_dir / DONE / f"{_name(s)}.json").read_text()) for s in shards]
    write_text_atomic(out_dir / MANIFEST, json.dumps({
        "rows": sum(r["rows"] for r in records), "bad_rows": sum(r["bad_rows"] for r in records),
        "shards": [{k: r[k] for k in ("shard", "rows", "bad_rows")} for r in records]}, indent=1))


def score_shards(runs: list[str], input_dir, out_dir, outputs: tuple[str, ...], *, address: str = "local",
                 actors: int = 1, cpus_per_actor: float = 0.5, gpus_per_actor: float = 0.0, batch_size: int = 512,
                 ism_dtype: str = "float16", on_bad_rows: str = "fail", progress: bool = True) -> ScoreSummary:
    """Score every pending shard of `input_dir` with every run's best model; see the module docstring."""
    outputs = normalize_outputs(outputs)  # every input is checked before anything is written or Ray starts
    runs = expand_runs(runs)
    input_dir, out_dir = as_path(input_dir), as_path(out_dir)
    shards = _input_shards(input_dir, check_runs(runs))
    if len({_name(s) for s in shards}) != len(shards):
        raise DataError(f"{input_dir}: two shards share a file name")
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {"runs": runs, "input": str(input_dir), "outputs": sorted(outputs),
                              "ism_dtype": ism_dtype})
    if not is_remote(out_dir):
        for folder in (out_dir, out_dir / ERRORS):
            remove_stale_temps(folder)
    finished = _finished(out_dir)
    pending = {s: n for s, n in shards.items() if _name(s) not in finished}
    total = sum(shards.values())
    print(f"score: {len(shards)} shards ({total:,} rows), {len(shards) - len(pending)} already done, "
          f"{len(pending)} to score", flush=True)
    started = time.time()
    per_actor: dict[str, int] = defaultdict(int)
    failed: list[str] = []
    written = rows = 0
    if pending:
        connect(address, env_vars=storage_env())
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        # One row and one block per shard: each shard is one task, so its output lands as soon as it
        # is scored, whatever its size (Ray Data would otherwise pack small shards into one block).
        ds = ray.data.from_items([{"shard": s} for s in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(ShardScorer, batch_size=1, batch_format="pyarrow", num_cpus=cpus_per_actor,
                            num_gpus=gpus_per_actor, compute=ray.data.ActorPoolStrategy(size=actors),
                            fn_constructor_kwargs={"runs": runs, "outputs": outputs, "out_dir": str(out_dir),
                                                   "ism_dtype": ism_dtype, "batch_size": batch_size,
                                                   "on_bad_rows": on_bad_rows})
        bar = tqdm(total=total, initial=total - sum(pending.values()), unit="row", disable=not progress,
                   desc="score", dynamic_ncols=True, smoothing=0.05)
        sizes = {_name(s): n for s, n in pending.items()}
        for record in ds.iter_rows():
            bar.update(sizes[record["shard"]])
            if record["error"]:
                failed.append(record["error"])
                tqdm.write(f"tfbind: {record['error']}")
                continue
            written += 1
            rows += record["rows"]
            per_actor[record["actor"]] += record["rows"]
        bar.close()
    if not failed:
        _write_manifest(out_dir, shards)
    return ScoreSummary(rows, written, failed, time.time() - started, dict(per_actor))
