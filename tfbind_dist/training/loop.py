"""The training loop: `train_and_evaluate(config, workdir)`.

Writes a run directory (see `tfbind_dist.rundir`), but only after every input has been
validated, so a mistake never leaves a directory that refuses the corrected command.
Re-running with the same workdir resumes from the latest checkpoint; a finished run
is not trained again.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from tfbind_dist import config as config_lib
from tfbind_dist.config import ConfigError, RunConfig
from tfbind_dist.data.io import SplitData
from tfbind_dist.data.pipeline import train_dataset
from tfbind_dist.data.sources import is_synthetic, load_splits
from tfbind_dist.models import build_model
from tfbind_dist.plotting import detached
from tfbind_dist.rundir import MetricsLog, RunDir
from tfbind_dist.storage import save_figure, storage_fault
from tfbind_dist.training.checkpoint import RunCheckpoints, publishes
from tfbind_dist.training.evaluate import evaluate_split
from tfbind_dist.training.mesh import check_batch_divisible, make_mesh, shard_batch
from tfbind_dist.training.pacing import DispatchWindow, StallWatchdog
from tfbind_dist.training.plots import plot_learning_curve
from tfbind_dist.training.state import create_state, make_optimizer
from tfbind_dist.training.steps import make_logits_fn, make_train_step

DISPATCH_DEPTH = 4  # train steps the host may run ahead of the devices (see training/pacing.py)


def is_primary() -> bool:
    return jax.process_index() == 0


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


def with_absolute_data_path(config: RunConfig) -> RunConfig:
    """The config with `data.path` made absolute, so the run works from any working directory."""
    absolute = config_lib.absolute_data_path(config.data.path)
    return config if absolute == config.data.path else config_lib.with_overrides(config, {"data.path": absolute})


def validate_inputs(config: RunConfig, workdir, devices=None) -> tuple[dict[str, SplitData], Any]:
    """Check everything a run needs before its directory is written: the data (folder, TF, all three
    splits, one sequence length), the model and its overrides, and the batch size against the
    devices, processes and the training split. Returns the loaded splits and the device mesh."""
    try:
        build_model(config.model.name, **config.model.overrides)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.overrides: {err}") from None
    splits = load_splits(config.data)
    plan = make_mesh(devices)
    if publishes(workdir) and jax.process_count() > 1:
        raise ConfigError(f"{workdir}: an s3:// run directory takes one process per job (its checkpoints are "
                          "published by that process); run multi-host jobs on gs:// or a disk every host shares")
    batch = config.train.batch_size
    check_batch_divisible(batch, plan)
    if batch % jax.process_count():
        raise ConfigError(f"train.batch_size={batch} is not divisible by {jax.process_count()} processes")
    if len(splits["train"]) < batch:
        raise ConfigError(f"train.batch_size={batch} is larger than the {len(splits['train'])} rows of "
                          f"{config.data.tf}'s train split")
    return splits, plan


def train_and_evaluate(config: RunConfig, workdir: str | Path, *, progress: bool = True, devices=None) -> dict[str, Any]:
    """Train one TF model on every visible device; resume if `workdir` holds a checkpoint.

    Returns the run summary (also written to `workdir/summary.json`). With
    `train.halt_after`, stops early after that many steps with a resumable checkpoint
    and returns a summary whose `status` is "halted". `devices` restricts the mesh
    (default: every device of every process).
    """
    run = RunDir(workdir)
    config = with_absolute_data_path(config).validate()
    run.check_config(config)
    if run.is_finished():
        return run.summary()

    started = time.time()
    cfg, tcfg = config, config.train
    splits, plan = validate_inputs(config, workdir, devices)
    length = splits["train"].length
    eval_batch = max(plan.num_devices, cfg.data.eval_batch_size // plan.num_devices * plan.num_devices)
    if is_primary():
        run.create(config, sequence_length=length)

    model = build_model(cfg.model.name, **cfg.model.overrides)
    tx = make_optimizer(tcfg)
    state = jax.device_put(create_state(model, tx, length, tcfg.seed), plan.replicated)
    batches = make_train_iterator(cfg, splits["train"])
    checkpoints = RunCheckpoints(run.checkpoints)
    try:
        return _train(run, config, splits, plan, model, tx, state, batches, checkpoints, started=started,
                      eval_batch=eval_batch, length=length, progress=progress)
    except BaseException as err:
        if storage_fault(err) is not None:  # a full disk or refused write: stop orbax's threads quietly
            checkpoints.abandon()
        raise


def _train(run: RunDir, config: RunConfig, splits: dict[str, SplitData], plan, model, tx, state, batches,
           checkpoints: RunCheckpoints, *, started: float, eval_batch: int, length: int, progress: bool) -> dict[str, Any]:
    """Resume from the latest checkpoint, train, evaluate and checkpoint to the end; the run summary."""
    cfg, tcfg = config, config.train
    progress_record: dict[str, Any] = {"best_auroc": -1.0, "best_step": 0, "wall_seconds": 0.0}
    restored = checkpoints.restore_latest(state, batches)
    start_step = 0
    if restored is not None:
        start_step, state, progress_record = restored
        progress_record["resumed_from"] = [*progress_record.get("resumed_from", []), int(start_step)]
    metrics = MetricsLog(run, resume_step=start_step, primary=is_primary())

    def report(status: str, step: int, **extra):
        if is_primary():
            run.write_progress({"status": status, "step": int(step), "steps": tcfg.steps,
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
                    metrics.flush()  # first: a checkpoint never gets ahead of the metrics a resume keeps
                    if valid["auroc"] > progress_record["best_auroc"]:
                        progress_record.update(best_auroc=valid["auroc"], best_step=step)
                        checkpoints.save_best(step, state, progress_record)
                    checkpoints.save_latest(step, state, batches, progress_record)
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
                metrics.flush()
                if end_step > start_step and end_step % tcfg.eval_every:
                    progress_record["wall_seconds"] += time.time() - started
                    checkpoints.save_latest(end_step, state, batches, progress_record)
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
        "synthetic_data": is_synthetic(cfg.data.path),
        "host": socket.gethostname(),
        "train_rows": len(splits["train"]),
        "resumed_from": progress_record.get("resumed_from", []),
        "length": length,
    }
    if tcfg.with_baseline:
        from tfbind_dist.training.kmer_baseline import fit_kmer_baseline

        baseline = fit_kmer_baseline(splits, seed=tcfg.seed)
        summary.update(baseline_valid_auroc=baseline.valid_auroc, baseline_test_auroc=baseline.test_auroc,
                       baseline=baseline.description)
    if is_primary():
        figure, axes = detached((11, 4), 1, 2)
        plot_learning_curve(metrics.frame(), f"{cfg.data.tf} {cfg.model.name}", axes=axes[0])
        save_figure(figure, run.learning_curve, dpi=110)
        run.write_summary(summary)
    report("finished", stopped_early or tcfg.steps)
    checkpoints.close()
    metrics.close()
    return summary
