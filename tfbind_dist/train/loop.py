"""The training loop: `train_and_evaluate(config, workdir)`.

The run directory is the contract with sweeps, scoring and explain:
  config.yaml, metrics.parquet (step, split, metric, value), checkpoints/{latest,best},
  summary.json, learning_curve.png, tb/ (TensorBoard events).
Re-running with the same workdir resumes from the latest checkpoint; a finished run
is not trained again.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tfbind_dist import config as config_lib
from tfbind_dist.config import RunConfig
from tfbind_dist.data.io import SplitData, write_table_atomic
from tfbind_dist.data.pipeline import train_dataset
from tfbind_dist.data.sources import load_splits
from tfbind_dist.models import build_model
from tfbind_dist.storage import as_path, is_remote, read_parquet, write_bytes_atomic, write_text_atomic
from tfbind_dist.train.checkpoint import RunCheckpoints
from tfbind_dist.train.evaluate import evaluate_split
from tfbind_dist.train.mesh import check_batch_divisible, make_mesh, shard_batch
from tfbind_dist.train.pacing import DispatchWindow, StallWatchdog
from tfbind_dist.train.plots import plot_learning_curve
from tfbind_dist.train.state import create_state, make_optimizer
from tfbind_dist.train.steps import make_logits_fn, make_train_step

METRIC_COLUMNS = ["step", "split", "metric", "value"]
DISPATCH_DEPTH = 4  # train steps the host may run ahead of the devices (see train/pacing.py)


class RunConfigMismatch(ValueError):
    """A workdir holds a run with a different configuration."""


@dataclass
class Model:
    """A trained model restored from a run directory, ready for inference."""

    config: RunConfig
    module: Any
    params: Any
    batch_stats: Any
    length: int
    step: int

    @property
    def variables(self) -> dict[str, Any]:
        return {"params": self.params, "batch_stats": self.batch_stats} if self.batch_stats else {"params": self.params}


def is_primary() -> bool:
    return jax.process_index() == 0


def _prepare_workdir(config: RunConfig, workdir: Path) -> None:
    """Write config.yaml, or check that an existing one matches (ignoring operational settings)."""
    path = workdir / "config.yaml"
    if path.exists():
        old = config_lib.load(path).identity()
        new = config.identity()
        for section in new:
            for key, value in new[section].items():
                if old[section].get(key) != value:
                    raise RunConfigMismatch(
                        f"{workdir} holds a run with {section}.{key}={old[section].get(key)!r}, "
                        f"not {value!r}; use another --out or the same settings to resume"
                    )
    elif is_primary():
        workdir.mkdir(parents=True, exist_ok=True)
        config_lib.save(config, path)


class MetricsLog:
    """Rows of (step, split, metric, value), persisted to metrics.parquet and TensorBoard."""

    def __init__(self, workdir: Path, resume_step: int):
        self.path = workdir / "metrics.parquet"
        self.rows: list[tuple[int, str, str, float]] = []
        if self.path.exists():
            old = read_parquet(self.path)
            old = old[old.step <= resume_step]
            self.rows = list(old.itertuples(index=False, name=None))
        self.writer = None
        self.tb_dir = workdir / "tb"
        self.tb_staging = None
        if is_primary():
            from tensorboardX import SummaryWriter

            if is_remote(workdir):  # events are staged locally and uploaded whole at each flush
                self.tb_staging = Path(tempfile.mkdtemp(prefix="tfbind-tb-"))
            self.writer = SummaryWriter(str(self.tb_staging or self.tb_dir))

    def add(self, step: int, split: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            self.rows.append((int(step), split, metric, float(value)))
            if self.writer is not None:
                self.writer.add_scalar(f"{split}/{metric}", float(value), int(step))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=METRIC_COLUMNS)

    def flush(self) -> None:
        if is_primary():
            import pyarrow as pa

            write_table_atomic(pa.Table.from_pandas(self.frame(), preserve_index=False), self.path)
            self.writer.flush()
            if self.tb_staging is not None:
                for event_file in self.tb_staging.iterdir():
                    write_bytes_atomic(self.tb_dir / event_file.name, event_file.read_bytes())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.tb_staging is not None:
            shutil.rmtree(self.tb_staging, ignore_errors=True)


def write_progress(workdir: Path, record: dict[str, Any]) -> None:
    """progress.json: what a sweep driver shows for a running job (written at start and every evaluation)."""
    if is_primary():
        write_text_atomic(workdir / "progress.json", json.dumps({**record, "updated": time.time()}))


def _out_of_patience(tcfg, step: int, best_step: int) -> bool:
    """Early stopping: `patience` evaluations have passed without a better validation auROC."""
    return bool(tcfg.patience) and step - best_step >= tcfg.patience * tcfg.eval_every


def make_train_iterator(config: RunConfig, train: SplitData):
    """The configured loader's iterator over this process's part of each global batch."""
    if config.data.loader == "tfdata":
        from tfbind_dist.data.tfdata import TFDataTrainIterator

        return TFDataTrainIterator(train.codes, train.labels, batch_size=config.train.batch_size,
                                   seed=config.train.seed, process_index=jax.process_index(),
                                   process_count=jax.process_count())
    dataset = train_dataset(train, batch_size=config.train.batch_size, seed=config.train.seed,
                            process_index=jax.process_index(), process_count=jax.process_count())
    return iter(dataset)


def train_and_evaluate(config: RunConfig, workdir: str | Path, *, progress: bool = True, devices=None) -> dict[str, Any]:
    """Train one TF model on every visible device; resume if `workdir` holds a checkpoint.

    Returns the run summary (also written to `workdir/summary.json`). With
    `train.halt_after`, stops early after that many steps with a resumable checkpoint
    and returns a summary whose `status` is "halted". `devices` restricts the mesh
    (default: every device of every process).
    """
    workdir = as_path(workdir)
    config.validate()
    _prepare_workdir(config, workdir)
    summary_path = workdir / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())

    started = time.time()
    cfg, tcfg = config, config.train
    splits = load_splits(cfg.data)
    length = splits["train"].length
    plan = make_mesh(devices)
    check_batch_divisible(tcfg.batch_size, plan)
    if tcfg.batch_size % jax.process_count():
        raise ValueError(f"train.batch_size={tcfg.batch_size} is not divisible by {jax.process_count()} processes")
    eval_batch = max(plan.num_devices, cfg.data.eval_batch_size // plan.num_devices * plan.num_devices)

    model = build_model(cfg.model.name, **cfg.model.overrides)
    tx = make_optimizer(tcfg)
    state = jax.device_put(create_state(model, tx, length, tcfg.seed), plan.replicated)
    batches = make_train_iterator(cfg, splits["train"])
    checkpoints = RunCheckpoints(workdir / "checkpoints")

    progress_record: dict[str, Any] = {"best_auroc": -1.0, "best_step": 0, "wall_seconds": 0.0}
    restored = checkpoints.restore_latest(state, batches)
    start_step = 0
    if restored is not None:
        start_step, state, progress_record = restored
        progress_record["resumed_from"] = [*progress_record.get("resumed_from", []), int(start_step)]
    metrics = MetricsLog(workdir, resume_step=start_step)

    def report(status: str, step: int, **extra):
        write_progress(workdir, {"status": status, "step": int(step), "steps": tcfg.steps,
                                 "best_auroc": progress_record["best_auroc"], "best_step": progress_record["best_step"],
                                 "resumed_from": progress_record.get("resumed_from", []), **extra})

    report("running", start_step)

    train_step = make_train_step(model, tx, plan, cfg.data.n_policy, tcfg)
    logits_fn = make_logits_fn(model, cfg.data.n_policy, plan)
    end_step = tcfg.steps if tcfg.halt_after is None else min(tcfg.steps, start_step + tcfg.halt_after)
    pending: list[tuple[int, jax.Array]] = []
    last_auroc = float("nan")
    stopped_early: int | None = None
    if restored is not None and _out_of_patience(tcfg, start_step, progress_record["best_step"]):
        stopped_early = end_step = start_step  # killed between the last evaluation and the summary

    def flush_train_losses():
        if pending:
            values = np.asarray(jax.device_get(jnp.stack([loss for _, loss in pending])))
            for (step, _), value in zip(pending, values):
                metrics.add(step, "train", {"loss": value})
            pending.clear()
            return float(values[-1])
        return float("nan")

    bar = tqdm(total=tcfg.steps, initial=start_step, disable=not (progress and is_primary()),
               desc=f"{cfg.data.tf}/{cfg.model.name}", unit="step", dynamic_ncols=True)
    window = DispatchWindow(DISPATCH_DEPTH)
    watchdog = StallWatchdog(tcfg.stall_timeout, label=f"training {cfg.data.tf}/{cfg.model.name}")
    with watchdog:
        for step in range(start_step + 1, end_step + 1):
            batch = shard_batch(plan, next(batches))
            state, loss = train_step(state, batch["codes"], batch["labels"])
            pending.append((step, loss))
            window.push(loss)
            watchdog.progress(max(start_step, step - window.depth) + 1)  # the oldest step still in flight
            bar.update(1)
            if step % tcfg.eval_every == 0 or step == tcfg.steps:
                with watchdog.phase("evaluation", step):
                    window.drain()
                    last_loss = flush_train_losses()
                    valid = evaluate_split(logits_fn, state.params, state.batch_stats, splits["valid"], plan, eval_batch)
                metrics.add(step, "valid", valid)
                last_auroc = valid["auroc"]
                progress_record["wall_seconds"] += time.time() - started
                started = time.time()
                with watchdog.phase("checkpoint", step):
                    if valid["auroc"] > progress_record["best_auroc"]:
                        progress_record.update(best_auroc=valid["auroc"], best_step=step)
                        checkpoints.save_best(step, state, progress_record)
                    checkpoints.save_latest(step, state, batches, progress_record)
                    metrics.flush()
                bar.set_postfix(loss=f"{last_loss:.4f}", valid_auroc=f"{last_auroc:.4f}",
                                best=f"{progress_record['best_auroc']:.4f}")
                report("running", step, valid_auroc=last_auroc)
                if _out_of_patience(tcfg, step, progress_record["best_step"]):
                    stopped_early = step
                    break
        bar.close()

        if end_step < tcfg.steps and stopped_early is None:  # halted: leave a resumable checkpoint at this exact step
            with watchdog.phase("checkpoint", end_step):
                window.drain()
                flush_train_losses()
                if end_step > start_step and end_step % tcfg.eval_every:
                    progress_record["wall_seconds"] += time.time() - started
                    checkpoints.save_latest(end_step, state, batches, progress_record)
                metrics.flush()
                checkpoints.wait()
            checkpoints.close()
            metrics.close()
            report("halted", end_step)
            return {"status": "halted", "step": end_step, "tf": cfg.data.tf, "model": cfg.model.name}

        final_step = stopped_early or tcfg.steps
        with watchdog.phase("checkpoint", final_step):
            checkpoints.wait()
            best_step, best_state = checkpoints.restore_best(state)
        with watchdog.phase("test evaluation", final_step):
            test = evaluate_split(logits_fn, best_state.params, best_state.batch_stats, splits["test"], plan, eval_batch)
    metrics.add(best_step, "test", test)
    metrics.flush()
    progress_record["wall_seconds"] += time.time() - started
    summary = {
        "status": "finished",
        "tf": cfg.data.tf,
        "model": cfg.model.name,
        "steps": tcfg.steps,
        "stopped_early_at": stopped_early,
        "best_step": int(best_step),
        "best_valid_auroc": float(progress_record["best_auroc"]),
        "test_auroc": test["auroc"],
        "test_auprc": test["auprc"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "num_devices": plan.num_devices,
        "num_processes": jax.process_count(),
        "wall_seconds": round(progress_record["wall_seconds"], 2),
        "data": str(cfg.data.path),
        "train_rows": len(splits["train"]),
        "resumed_from": progress_record.get("resumed_from", []),
        "length": length,
    }
    if tcfg.with_baseline:
        from tfbind_dist.train.kmer_baseline import fit_kmer_baseline

        baseline = fit_kmer_baseline(splits, seed=tcfg.seed)
        summary.update(baseline_valid_auroc=baseline.valid_auroc, baseline_test_auroc=baseline.test_auroc,
                       baseline=baseline.description)
    if is_primary():
        plot_learning_curve(metrics.frame(), f"{cfg.data.tf} {cfg.model.name}", workdir / "learning_curve.png")
        write_text_atomic(summary_path, json.dumps(summary, indent=2))
    report("finished", stopped_early or tcfg.steps)
    checkpoints.close()
    metrics.close()
    return summary


def load_model(workdir: str | Path, which: str = "best") -> Model:
    """Restore a run's best (or latest) checkpoint for inference, on the default device."""
    workdir = as_path(workdir)
    if not (workdir / "config.yaml").exists():
        raise FileNotFoundError(f"{workdir} is not a run directory (no config.yaml)")
    config = config_lib.load(workdir / "config.yaml")
    length = _run_sequence_length(workdir, config)
    module = build_model(config.model.name, **config.model.overrides)
    tx = make_optimizer(config.train)
    target = create_state(module, tx, length, config.train.seed)
    checkpoints = RunCheckpoints(workdir / "checkpoints")
    try:
        if which == "best":
            step, state = checkpoints.restore_best(target)
        else:
            restored = checkpoints.restore_latest(target, None)
            if restored is None:
                raise FileNotFoundError(f"no checkpoint under {workdir / 'checkpoints'}")
            step, state, _ = restored
    finally:
        checkpoints.close()
    return Model(config, module, state.params, state.batch_stats, length, int(step))


def _run_sequence_length(workdir: Path, config: RunConfig) -> int:
    """Sequence length the run was trained on: from summary.json, else from its validation split."""
    meta = workdir / "summary.json"
    summary = json.loads(meta.read_text()) if meta.exists() else {}
    if "length" in summary:
        return int(summary["length"])
    return load_splits(config.data, splits=("valid",))["valid"].length
