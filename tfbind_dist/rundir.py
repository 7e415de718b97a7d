"""The run directory: the one contract between training, sweeps, scoring, explain and reports.

    config.yaml       the resolved RunConfig (checked on resume: only operational keys may differ)
    run.json          what loading a model needs besides the config and checkpoints: the sequence length
    metrics.parquet   step, split, metric, value (train loss per step; valid every eval_every; test at the end)
    progress.json     live state for a sweep's table (written at start and at every evaluation)
    summary.json      the finished run's summary; its presence means "finished"
    attempts.jsonl    one line per start of the job (node, pid, time); attempts.pN.jsonl for process N > 0
    checkpoints/      orbax `latest` and `best`, one folder per saved step (named by the step) in each
    learning_curve.png, tb/ (TensorBoard events)

Every other module reads and writes these through `RunDir`; none spells a file name itself.
Works on local disk and on object storage (gs://).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tfbind_dist import config as config_lib
from tfbind_dist.config import RunConfig
from tfbind_dist.errors import DataError, RunConfigMismatch, RunDirError  # noqa: F401 (re-exported)
from tfbind_dist.storage import AnyPath, as_path, expand, is_remote, read_parquet, read_text, write_bytes_atomic, \
    write_table_atomic, write_text_atomic

CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.parquet"
PROGRESS = "progress.json"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
LATEST, BEST = "latest", "best"  # checkpoints/<which>/<step>/ (orbax's layout)
PUBLISHED = "_PUBLISHED"  # on s3://: checkpoints/<which>/<step>/_PUBLISHED, written once the step is whole
LEARNING_CURVE = "learning_curve.png"
TENSORBOARD = "tb"
METRIC_COLUMNS = ["step", "split", "metric", "value"]


class RunDir:
    """One run directory (local path or object-store URL)."""

    def __init__(self, path: str | Path):
        self.path: AnyPath = as_path(path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def checkpoints(self) -> AnyPath:
        return self.path / CHECKPOINTS

    def checkpoint_steps(self, which: str = BEST) -> list[int]:
        """The steps saved under checkpoints/<which> (`latest` or `best`), ascending; [] if none (on s3://, only
        the steps published whole: `training.checkpoint`)."""
        folder = self.checkpoints / which
        if not folder.is_dir():
            return []
        published = str(self.path).startswith("s3://")
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (not published or (p / PUBLISHED).exists()))

    @property
    def learning_curve(self) -> AnyPath:
        return self.path / LEARNING_CURVE

    # --- config -------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / CONFIG).exists()

    def load_config(self) -> RunConfig:
        path = self.path / CONFIG
        if not path.exists():
            raise RunDirError(f"{self.path} is not a run directory (no {CONFIG})")
        try:
            return config_lib.load(path)
        except (OSError, ValueError) as err:
            raise RunDirError(f"{path}: unreadable run config ({str(err).splitlines()[0]})") from None

    def check_config(self, config: RunConfig) -> None:
        """Raise RunConfigMismatch if this directory holds a run whose results-deciding settings differ."""
        if not self.exists():
            return
        old, new = self.load_config().identity(), config.identity()
        for section in new:
            for key, value in new[section].items():
                if old[section].get(key) != value:
                    raise RunConfigMismatch(
                        f"{self.path} holds a run with {section}.{key}={old[section].get(key)!r}, "
                        f"not {value!r}; use another --out or the same settings to resume")

    def create(self, config: RunConfig, *, sequence_length: int) -> None:
        """Write config.yaml and run.json for a new run (call only once every input has been validated)."""
        if self.exists():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / RUN_INFO, json.dumps({"sequence_length": int(sequence_length)}, indent=1))
        config_lib.save(config, self.path / CONFIG)  # last: its presence marks the run as created

    def info(self) -> dict[str, Any]:
        return self._read_json(RUN_INFO) or {}

    def sequence_length(self) -> int | None:
        """The trained sequence length, from run.json (or summary.json of runs made before run.json)."""
        length = self.info().get("sequence_length") or (self.summary() or {}).get("length")
        return int(length) if length else None

    # --- records -------------------------------------------------------------------------------
    def _read_json(self, name: str) -> dict[str, Any] | None:
        path = self.path / name
        if not path.exists():
            return None
        try:
            return json.loads(read_text(path))
        except json.JSONDecodeError as err:
            raise RunDirError(f"{path}: unreadable JSON ({err})") from None

    def summary(self) -> dict[str, Any] | None:
        return self._read_json(SUMMARY)

    def is_finished(self) -> bool:
        return (self.path / SUMMARY).exists()

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_text_atomic(self.path / SUMMARY, json.dumps(summary, indent=2))

    def progress(self) -> dict[str, Any]:
        try:
            return self._read_json(PROGRESS) or {}
        except RunDirError:  # being replaced right now; the next poll reads it
            return {}

    def write_progress(self, record: dict[str, Any]) -> None:
        write_text_atomic(self.path / PROGRESS, json.dumps({**record, "updated": time.time()}))

    def _attempts_path(self, process_id: int) -> AnyPath:
        return self.path / ("attempts.jsonl" if process_id == 0 else f"attempts.p{process_id}.jsonl")

    def record_attempt(self, record: dict[str, Any], process_id: int = 0) -> None:
        """Append one start record (rewritten whole: object stores have no append; one writer per process)."""
        path = self._attempts_path(process_id)
        self.path.mkdir(parents=True, exist_ok=True)
        previous = read_text(path) if path.exists() else ""
        write_text_atomic(path, previous + json.dumps(record) + "\n")

    def last_attempt(self) -> dict[str, Any]:
        """The latest start record of process 0, with `attempts` (how many starts so far); {} if none."""
        path = self._attempts_path(0)
        lines = read_text(path).strip().splitlines() if path.exists() else []
        return {**json.loads(lines[-1]), "attempts": len(lines)} if lines else {}

    def metrics(self):
        """metrics.parquet as a DataFrame (step, split, metric, value)."""
        return read_parquet(self.path / METRICS)


def expand_runs(runs: list[str]) -> list[str]:
    """Run directories as absolute paths or URLs; a quoted pattern (`'gs://b/sweep/*'`, which no shell
    expands) gives the run directories it matches."""
    expanded = []
    for run in runs:
        if any(c in str(run) for c in "*?["):
            matches = [m for m in expand(str(run)) if (as_path(m) / CONFIG).exists()]
            if not matches:
                raise RunDirError(f"--runs {run}: matches no run directory")
            expanded += matches
        else:
            expanded.append(str(run))
    if not expanded:
        raise RunDirError("--runs: name at least one run directory")
    return [str(as_path(r)) for r in expanded]


def check_runs(runs: list[str]) -> int | None:
    """Every run restorable, checked without loading a model (config, a best checkpoint); their common
    sequence length (None when no run records one: runs made before run.json)."""
    lengths = {}
    for run_path in runs:
        run = RunDir(run_path)
        run.load_config()
        if not run.checkpoint_steps(BEST):
            raise RunDirError(f"{run}: no best checkpoint under {run.checkpoints / BEST} (has the run finished an "
                              "evaluation?)")
        lengths[str(run)] = run.sequence_length()
    known = {v for v in lengths.values() if v}
    if len(known) > 1:
        raise DataError(f"--runs: the runs were trained on different sequence lengths {lengths}; score them separately")
    return known.pop() if known else None


def column_keys(tfs: list[str], runs: list[str | Path]) -> list[str]:
    """How outputs name each run's columns: its TF, or its directory name where two runs share a TF."""
    return [tf if tfs.count(tf) == 1 else Path(str(run).rstrip("/")).name for tf, run in zip(tfs, runs)]


class MetricsLog:
    """Rows of (step, split, metric, value), persisted to metrics.parquet and TensorBoard (primary process only)."""

    def __init__(self, run: RunDir, resume_step: int, *, primary: bool = True):
        self.path = run.path / METRICS
        self.primary = primary
        self.rows: list[tuple[int, str, str, float]] = []
        if self.path.exists():
            old = read_parquet(self.path)
            old = old[old.step <= resume_step]
            self.rows = list(old.itertuples(index=False, name=None))
        self.writer = None
        self.tb_dir = run.path / TENSORBOARD
        self.tb_staging = None
        if primary:
            from tensorboardX import SummaryWriter

            # Events are staged in a local temp folder and copied whole into the run directory at each flush
            # (through the one atomic writer): object storage has no append, and on a disk that fills up the
            # copy fails in this process, as one line, not in tensorboardX's writer thread as a traceback.
            self.tb_staging = Path(tempfile.mkdtemp(prefix="tfbind-tb-"))
            self.writer = SummaryWriter(str(self.tb_staging))

    def add(self, step: int, split: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            self.rows.append((int(step), split, metric, float(value)))
            if self.writer is not None:
                self.writer.add_scalar(f"{split}/{metric}", float(value), int(step))

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=METRIC_COLUMNS)

    def flush(self) -> None:
        if not self.primary:
            return
        import pyarrow as pa

        write_table_atomic(pa.Table.from_pandas(self.frame(), preserve_index=False), self.path)
        self.writer.flush()
        self._publish_events()

    def _publish_events(self) -> None:
        for event_file in self.tb_staging.iterdir():
            write_bytes_atomic(self.tb_dir / event_file.name, event_file.read_bytes())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self._publish_events()
            shutil.rmtree(self.tb_staging, ignore_errors=True)

    def discard(self) -> None:
        """After a failed run: remove the local staging folder (what was flushed is in the run directory)."""
        if self.tb_staging is not None:
            shutil.rmtree(self.tb_staging, ignore_errors=True)


