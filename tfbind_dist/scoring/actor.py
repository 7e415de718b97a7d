"""The scoring actor: one per Ray Data actor slot, it loads every model once, then scores whole shards.

The actor that takes a shard streams it in batches through `scorer.score_table`, writes the shard's
scores itself (a Parquet file in row groups: temp file + rename on disk, one whole-object upload on
object storage), then its marker (`scores.mark_done`), and returns one small completion record, so
the driver never holds scores. A shard that cannot be scored as a whole returns its reason instead.
"""
from __future__ import annotations

import contextlib
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from tfbind_dist.scoring import scores
from tfbind_dist.scoring.scorer import INPUT_COLUMNS, load_models, score_table
from tfbind_dist.errors import StorageError
from tfbind_dist.storage import as_path, atomic_output, open_parquet, storage_fault, write_table_atomic, writes_to

ROW_GROUP_ROWS, ROW_GROUP_BYTES = 65_536, 64 << 20  # scored batches are written in row groups of about this size


class ShardFailed(Exception):
    """A shard that cannot be scored as a whole (a bad row with --on-bad-rows fail, an unreadable file)."""


class ShardScorer:
    """Ray Data actor: loads every model once, then scores whole shards and writes their outputs."""

    def __init__(self, runs, outputs, out_dir, *, ism_dtype="float16", batch_size=512, on_bad_rows="fail"):
        import socket

        self.models = load_models(runs)
        self.outputs, self.ism_dtype, self.batch_size = tuple(outputs), ism_dtype, batch_size
        self.out_dir, self.on_bad_rows = as_path(out_dir), on_bad_rows
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        scores.remove_stale(self.out_dir)  # temps of this host's dead attempts

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.score_shard(shard) for shard in batch.column("shard").to_pylist()])

    def score_shard(self, shard: str) -> dict:
        """Score one shard into OUT/<name>, then mark it done; the completion record: `error` set if the shard
        failed, and `storage` too if the scores could not be stored (a full disk, a refused write: the
        driver stops at once, since every other shard would fail the same way)."""
        started, name = time.perf_counter(), scores.shard_name(shard)
        record = {"shard": name, "rows": 0, "bad_rows": 0, "error": None, "storage": False, "actor": self.name,
                  "seconds": 0.0}
        try:
            with writes_to(self.out_dir, resumes="the shards already scored are kept, the rest are scored"):
                record["rows"], record["bad_rows"] = self._write_scores(shard, name)
                record["seconds"] = round(time.perf_counter() - started, 3)
                scores.mark_done(self.out_dir, record)
        except StorageError as err:
            record.update(error=str(err), storage=True)
        except ShardFailed as err:
            record["error"] = str(err)
        return record

    def _write_scores(self, shard: str, name: str) -> tuple[int, int]:
        """Score a shard into OUT/<name> (bad rows, when skipped, into errors/_<name>); (rows, bad rows)."""
        with contextlib.ExitStack() as stack:
            try:
                source = stack.enter_context(open_parquet(shard))
            except (OSError, pa.ArrowInvalid) as err:
                raise ShardFailed(f"shard {name}: cannot read as Parquet ({str(err).splitlines()[0]})") from None
            with atomic_output(scores.scores_path(self.out_dir, name)) as tmp:
                try:
                    rows, bad_ids, bad_reasons = self._stream_scores(source, name, tmp)
                except (OSError, pa.ArrowInvalid) as err:
                    if storage_fault(err):
                        raise
                    raise ShardFailed(f"shard {name}: {str(err).splitlines()[0]} (shard not written)") from None
        if bad_ids:
            write_table_atomic(pa.table({"id": pa.array(bad_ids, pa.int64()), "error": bad_reasons}),
                               scores.errors_path(self.out_dir, name))
        return rows, len(bad_ids)

    def _stream_scores(self, source, name: str, target) -> tuple[int, list[int], list[str]]:
        """Score `source` batch by batch into the Parquet file `target`, in row groups of ~ROW_GROUP_ROWS."""
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
