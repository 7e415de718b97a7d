"""`tfbind score`: genome-scale scoring of Parquet shards with Ray Data, resumable shard by shard.

read_parquet (pending shards) -> map_batches(ScorerActor, actor pool) -> the driver gathers each
input shard's rows and writes OUT_DIR/<shard name> atomically, then records it in
OUT_DIR/_MANIFEST.jsonl. A re-run scores only shards missing from the manifest, so an
interrupted run (driver or node killed) completes to exactly the rows of an uninterrupted one.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from tfbind_dist.data.io import DataError
from tfbind_dist.data.shard import SHARD_MANIFEST, read_shard_manifest
from tfbind_dist.ray_utils import connect
from tfbind_dist.rundir import RunDir, RunDirError
from tfbind_dist.scoring.scorer import normalize_outputs
from tfbind_dist.storage import append_line, write_table_atomic, write_text_atomic
from tfbind_dist.train.restore import load_model

MANIFEST = "_MANIFEST.jsonl"
SETTINGS = "_SCORE.json"


class ScorerActor:
    """Ray Data actor: loads every model once, then scores batches."""

    def __init__(self, runs, outputs, ism_dtype, batch_size):
        import os

        from tfbind_dist.scoring.scorer import load_models

        self.models = load_models(runs)
        self.outputs, self.ism_dtype, self.batch_size = tuple(outputs), ism_dtype, batch_size
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        from tfbind_dist.scoring.scorer import score_table

        scored = score_table(batch, self.models, self.outputs, ism_dtype=self.ism_dtype, pad_to=self.batch_size)
        bad_rows = {r for r, _ in scored.errors}
        good = pa.array([i for i in range(batch.num_rows) if i not in bad_rows], pa.int64())  # typed even when empty
        table = scored.table.append_column("path", batch.column("path").take(good))
        table = table.append_column("_error", pa.nulls(table.num_rows, pa.string()))
        if scored.errors:
            rows = pa.array([r for r, _ in scored.errors], pa.int64())
            bad = pa.table({"id": batch.column("id").take(rows), "path": batch.column("path").take(rows),
                            "_error": [reason for _, reason in scored.errors]})
            table = pa.concat_tables([table, bad], promote_options="permissive")
        return table.append_column("_actor", pa.array([self.name] * table.num_rows))


@dataclass
class ScoreSummary:
    rows: int
    shards_written: int
    shards_failed: list[str]
    seconds: float
    per_actor: dict[str, int]


def _input_shards(input_dir: Path, length: int) -> dict[str, int]:
    """{shard path: rows} of a shard directory, checked against the models' sequence length.

    With `_SHARDS.json` (written by `tfbind data shard`) exactly the shards it lists are scored,
    so other files in the folder are left alone; without one, every visible Parquet file must
    be a shard (an int64 `id` and `codes` or `sequence`).
    """
    if not input_dir.is_dir():
        raise DataError(f"--input {input_dir}: not a directory of shards (make one with `tfbind data shard`)")
    if (input_dir / SHARD_MANIFEST).exists():
        manifest = read_shard_manifest(input_dir)
        if manifest.get("window") not in (None, length):
            raise DataError(f"{input_dir / SHARD_MANIFEST}: windows of {manifest['window']} bp, but the runs were "
                            f"trained on {length}-bp sequences; re-shard with --window {length}")
        files = [input_dir / shard["file"] for shard in manifest["shards"]]
    else:
        files = sorted(p for p in input_dir.glob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        raise DataError(f"{input_dir}: no Parquet shards")
    shards = {}
    for path in files:
        try:
            meta = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError(f"{path}: cannot read as Parquet ({str(err).splitlines()[0]})") from None
        schema = meta.schema_arrow
        if "id" not in schema.names or not {"codes", "sequence"} & set(schema.names):
            raise DataError(f"{path}: not a shard (needs an 'id' column and 'codes' or 'sequence'; found "
                            f"{schema.names})")
        if "codes" in schema.names:
            codes_type = schema.field("codes").type
            if pa.types.is_fixed_size_binary(codes_type) and codes_type.byte_width != length:
                raise DataError(f"{path}: field 'codes' holds {codes_type.byte_width}-bp windows, but the runs were "
                                f"trained on {length}-bp sequences")
        shards[str(path)] = meta.metadata.num_rows
    return shards


def _check_runs(runs: list[str]) -> int:
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


def _finished(out_dir: Path) -> set[str]:
    path = out_dir / MANIFEST
    if not path.exists():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if (out_dir / record["output"]).exists():
            done.add(record["shard"])
    return done


def _check_settings(out_dir: Path, settings: dict) -> None:
    path = out_dir / SETTINGS
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise DataError(f"{out_dir} holds a scoring run with other settings ({', '.join(diff)}); use another --out")
    else:
        write_text_atomic(path, json.dumps(settings, indent=1))


def _finish_shard(out_dir: Path, shard: str, parts: list[pa.Table], on_bad_rows: str) -> str | None:
    """Write one shard's scores atomically; return an error message if the shard failed."""
    table = pa.concat_tables(parts, promote_options="permissive")
    table = table.take(pc.sort_indices(table, [("id", "ascending")]))
    errors = table.filter(pc.is_valid(table.column("_error")))
    name = Path(shard).name
    if errors.num_rows and on_bad_rows == "fail":
        first = errors.slice(0, 1).to_pylist()[0]
        return f"shard {name} row id {first['id']}: {first['_error']} ({errors.num_rows} bad rows; shard not written)"
    if errors.num_rows:
        write_table_atomic(errors.select(["id", "_error"]).rename_columns(["id", "error"]),
                           out_dir / "errors" / name)
    good = table.filter(pc.is_null(table.column("_error"))).drop_columns(["path", "_error", "_actor"])
    write_table_atomic(good, out_dir / name)
    append_line(out_dir / MANIFEST, json.dumps({"shard": shard, "output": name, "rows": good.num_rows,
                                                "bad_rows": errors.num_rows}))
    return None


def score_shards(runs: list[str], input_dir: str | Path, out_dir: str | Path, outputs: tuple[str, ...], *,
                 address: str = "local", actors: int = 1, cpus_per_actor: float = 0.5, gpus_per_actor: float = 0.0,
                 batch_size: int = 512, ism_dtype: str = "float16", on_bad_rows: str = "fail",
                 progress: bool = True) -> ScoreSummary:
    """Score every pending shard of `input_dir` with every run's best model."""
    outputs = normalize_outputs(outputs)  # every input is checked before anything is written or Ray starts
    if not runs:
        raise ValueError("--runs: name at least one run directory")
    input_dir, out_dir = Path(input_dir).absolute(), Path(out_dir).absolute()
    shards = _input_shards(input_dir, _check_runs(runs))
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {"runs": [str(Path(r).absolute()) for r in runs], "input": str(input_dir),
                              "outputs": sorted(outputs), "ism_dtype": ism_dtype})
    pending = {s: n for s, n in shards.items() if s not in _finished(out_dir)}
    total = sum(shards.values())
    print(f"score: {len(shards)} shards ({total:,} rows), {len(shards) - len(pending)} already done, "
          f"{len(pending)} to score", flush=True)
    started = time.time()
    per_actor: dict[str, int] = defaultdict(int)
    failed: list[str] = []
    written = 0
    if pending:
        connect(address)
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # shards complete in order: bounded buffering here
        ctx.enable_progress_bars = False
        # One read, one block per shard (left alone, read_parquet coalesces small files into one read
        # task and a second actor gets no work); one read instead of one per shard, because every read
        # costs Ray tasks (list files, footers) that on a small machine take the CPU from scoring.
        ds = ray.data.read_parquet(sorted(pending), include_paths=True, override_num_blocks=len(pending), max_calls=4)
        ds = ds.map_batches(ScorerActor, fn_constructor_kwargs={"runs": [str(r) for r in runs], "outputs": outputs,
                                                                "ism_dtype": ism_dtype, "batch_size": batch_size},
                            batch_size=batch_size, batch_format="pyarrow", num_cpus=cpus_per_actor,
                            num_gpus=gpus_per_actor, compute=ray.data.ActorPoolStrategy(size=actors))
        names = {Path(s).name: s for s in pending}
        buffers: dict[str, list[pa.Table]] = defaultdict(list)
        seen: dict[str, int] = defaultdict(int)
        bar = tqdm(total=total, initial=total - sum(pending.values()), unit="row", disable=not progress,
                   desc="score", dynamic_ncols=True, smoothing=0.05)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for actor, count in zip(*pc.value_counts(batch.column("_actor")).flatten()):
                per_actor[actor.as_py()] += count.as_py()
            for path in pc.unique(batch.column("path")).to_pylist():
                part = batch.filter(pc.equal(batch.column("path"), path))
                shard = names[Path(path).name]
                buffers[shard].append(part)
                seen[shard] += part.num_rows
                bar.update(part.num_rows)
                if seen[shard] == pending[shard]:
                    error = _finish_shard(out_dir, shard, buffers.pop(shard), on_bad_rows)
                    if error:
                        failed.append(error)
                        tqdm.write(f"tfbind: {error}")
                    else:
                        written += 1
        bar.close()
    seconds = time.time() - started
    return ScoreSummary(sum(pending.values()), written, failed, seconds, dict(per_actor))
