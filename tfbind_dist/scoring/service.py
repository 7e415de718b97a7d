"""`tfbind score`: the driver of genome-scale scoring of Parquet shards on a Ray cluster, resumable shard by shard.

Every input is checked before Ray starts (runs: `rundir.check_runs`; shards: `data.shard.list_shards`;
outputs). Then one Ray Data row per pending shard (one block each) -> map_batches(ShardScorer, actor
pool): the actor that takes a shard scores and writes it (`scoring.actor`) into the scores folder
(`scoring.scores`). The driver keeps the progress bar and, once every shard is done, writes the
manifest; it never holds scores, so its memory does not grow with the input or the width of the outputs.

A re-run scores only shards without a marker, so an interrupted run (driver, actor or node
killed) completes to exactly the rows of an uninterrupted one. Shards, runs and outputs may
each live on local disk or object storage (gs://, s3://).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from tqdm.auto import tqdm

from tfbind_dist.data.shard import list_shards
from tfbind_dist.errors import DataError, StorageError
from tfbind_dist.ray_utils import connect
from tfbind_dist.rundir import check_runs, expand_runs
from tfbind_dist.scoring import scores
from tfbind_dist.scoring.scorer import normalize_outputs
from tfbind_dist.storage import as_path, storage_env

@dataclass
class ScoreSummary:
    rows: int
    shards_written: int
    shards_failed: list[str]
    seconds: float
    per_actor: dict[str, int]

    def describe(self) -> str:
        """One line: rows and shards scored, rows/s overall and per actor."""
        rate = self.rows / self.seconds if self.seconds else 0.0
        actors = ", ".join(f"{name} {rows / self.seconds:,.0f} rows/s" for name, rows in sorted(self.per_actor.items()))
        return (f"scored {self.rows:,} rows into {self.shards_written} shards in {self.seconds:.1f} s "
                f"({rate:,.0f} rows/s){'; per actor: ' + actors if actors else ''}")


def runs_length(runs: list[str]) -> int:
    """The sequence length the runs were trained on (checked to be one); from their records, else their model."""
    length = check_runs(runs)
    if length is None:  # runs made before run.json recorded it
        from tfbind_dist.training.restore import load_model

        length = load_model(runs[0]).length
    return length


INLINE = "inline"  # address: score in this process, without Ray (small jobs, notebooks)


def _inline(pending: dict[str, int], options: dict):
    """Completion records of the pending shards, scored one after another by one actor in this process."""
    from tfbind_dist.scoring.actor import ShardScorer

    actor = ShardScorer(**options)
    for shard in pending:
        yield actor.score_shard(shard)


def _on_ray(pending: dict[str, int], options: dict, address: str, actors: int, cpus: float, gpus: float):
    """Completion records of the pending shards, scored by an actor pool on Ray Data (one task per shard)."""
    connect(address, env_vars=storage_env())
    import ray

    from tfbind_dist.scoring.actor import ShardScorer

    ray.data.DataContext.get_current().enable_progress_bars = False
    # One row and one block per shard: each shard is one task, so its output lands as soon as it
    # is scored, whatever its size (Ray Data would otherwise pack small shards into one block).
    ds = ray.data.from_items([{"shard": s} for s in pending], override_num_blocks=len(pending))
    ds = ds.map_batches(ShardScorer, batch_size=1, batch_format="pyarrow", num_cpus=cpus, num_gpus=gpus,
                        compute=ray.data.ActorPoolStrategy(size=actors), fn_constructor_kwargs=options)
    quiet_ray_data()
    yield from ds.iter_rows()


def quiet_ray_data() -> None:
    """Ray Data's console notes (execution plans, 'progress bars disabled': the command draws its own) off;
    its warnings and errors stay. Its logging is configured when a dataset is made, so after that."""
    import logging

    class Notes(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.WARNING and "Progress bars disabled" not in record.getMessage()

    for handler in logging.getLogger("ray.data").handlers + logging.getLogger("ray").handlers:
        handler.addFilter(Notes())


def score_shards(runs: list[str], input_dir, out_dir, outputs: tuple[str, ...], *, address: str = "local",
                 actors: int = 1, cpus_per_actor: float = 0.5, gpus_per_actor: float = 0.0, batch_size: int = 512,
                 ism_dtype: str = "float16", on_bad_rows: str = "fail", progress: bool = True) -> ScoreSummary:
    """Score every pending shard of `input_dir` with every run's best model; see the module docstring."""
    outputs = normalize_outputs(outputs)  # every input is checked before anything is written or Ray starts
    runs = expand_runs(runs)
    input_dir, out_dir = as_path(input_dir), as_path(out_dir)
    shards = list_shards(input_dir, runs_length(runs))
    if len({scores.shard_name(s) for s in shards}) != len(shards):
        raise DataError(f"{input_dir}: two shards share a file name")
    out_dir.mkdir(parents=True, exist_ok=True)
    scores.check_settings(out_dir, {"runs": runs, "input": str(input_dir), "outputs": sorted(outputs),
                                    "ism_dtype": ism_dtype})
    scores.remove_stale(out_dir)
    finished = scores.finished(out_dir)
    pending = {s: n for s, n in shards.items() if scores.shard_name(s) not in finished}
    total = sum(shards.values())
    print(f"score: {len(shards)} shards ({total:,} rows), {len(shards) - len(pending)} already done, "
          f"{len(pending)} to score", flush=True)
    started = time.time()
    per_actor: dict[str, int] = defaultdict(int)
    failed: list[str] = []
    written = rows = 0
    if pending:
        bar = tqdm(total=total, initial=total - sum(pending.values()), unit="row", disable=not progress,
                   desc="score", dynamic_ncols=True, smoothing=0.05)
        sizes = {scores.shard_name(s): n for s, n in pending.items()}
        options = {"runs": runs, "outputs": outputs, "out_dir": str(out_dir), "ism_dtype": ism_dtype,
                   "batch_size": batch_size, "on_bad_rows": on_bad_rows}
        for record in (_inline(pending, options) if address == INLINE else
                       _on_ray(pending, options, address, actors, cpus_per_actor, gpus_per_actor)):
            bar.update(sizes[record["shard"]])
            if record.get("storage"):  # the scores cannot be stored: every other shard would fail the same way
                bar.close()
                raise StorageError(record["error"])
            if record["error"]:
                failed.append(record["error"])
                tqdm.write(f"tfbind: {record['error']}")
                continue
            written += 1
            rows += record["rows"]
            per_actor[record["actor"]] += record["rows"]
        bar.close()
    if not failed:
        scores.write_manifest(out_dir, shards)
    return ScoreSummary(rows, written, failed, time.time() - started, dict(per_actor))
