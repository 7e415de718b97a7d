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
from tfbind_dist.storage import write_table_atomic
from tfbind_dist.ray_utils import connect
from tfbind_dist.scoring.scorer import OUTPUTS

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
        good = [i for i in range(batch.num_rows) if i not in bad_rows]
        table = scored.table.append_column("path", batch.column("path").take(good))
        table = table.append_column("_error", pa.nulls(table.num_rows, pa.string()))
        if scored.errors:
            rows = [r for r, _ in scored.errors]
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


def _input_shards(input_dir: Path) -> dict[str, int]:
    files = sorted(p for p in input_dir.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise DataError(f"{input_dir}: no Parquet shards")
    return {str(p): pq.ParquetFile(p).metadata.num_rows for p in files}


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
        path.write_text(json.dumps(settings, indent=1))


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
    with open(out_dir / MANIFEST, "a") as manifest:
        manifest.write(json.dumps({"shard": shard, "output": name, "rows": good.num_rows,
                                   "bad_rows": errors.num_rows}) + "\n")
    return None


def score_shards(runs: list[str], input_dir: str | Path, out_dir: str | Path, outputs: tuple[str, ...], *,
                 address: str = "local", actors: int = 1, cpus_per_actor: float = 0.5, gpus_per_actor: float = 0.0,
                 batch_size: int = 512, ism_dtype: str = "float16", on_bad_rows: str = "fail",
                 progress: bool = True) -> ScoreSummary:
    """Score every pending shard of `input_dir` with every run's best model."""
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown output(s) {sorted(unknown)}; choose from {', '.join(OUTPUTS)}")
    input_dir, out_dir = Path(input_dir).absolute(), Path(out_dir).absolute()
    shards = _input_shards(input_dir)
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
