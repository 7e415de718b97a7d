"""The training loop: `train_and_evaluate(config, workdir)` for one run, `train_pack(configs, workdirs)`
for several runs of one architecture trained as one vmapped program (see `training/packing.py`).

Both write run directories (see `tfbind_dist.rundir`), but only after every input has been
validated, so a mistake never leaves a directory that refuses the corrected command.
Re-running with the same workdir resumes from the latest checkpoint; a finished run
is not trained again. A packed run's members are ordinary run directories: each has its own
data iterator, metrics, checkpoints, early stopping and summary, and resumes on its own.

`train.steps_per_dispatch` runs that many steps in one dispatch (`lax.scan` over stacked
batches); a dispatch never crosses an evaluation, so evaluation and checkpoint cadence, and
resume, are unchanged.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from tfbind_dist import config as config_lib
from tfbind_dist.config import ConfigError, RunConfig
from tfbind_dist.data.io import SplitData
from tfbind_dist.data.pipeline import train_dataset
from tfbind_dist.data.sources import is_synthetic, load_splits
from tfbind_dist.experiment import check_packable
from tfbind_dist.models import build_model
from tfbind_dist.plotting import detached
from tfbind_dist.rundir import MetricsLog, RunDir
from tfbind_dist.storage import save_figure, storage_fault
from tfbind_dist.training.checkpoint import RunCheckpoints, publishes
from tfbind_dist.training.evaluate import evaluate_split
from tfbind_dist.training.mesh import MeshPlan, check_batch_divisible, make_mesh
from tfbind_dist.training.pacing import DispatchWindow, StallWatchdog
from tfbind_dist.training.preemption import StopRequest, stop_on_signals
from tfbind_dist.training.packing import PackedProgram, SoloProgram
from tfbind_dist.training.plots import plot_learning_curve
from tfbind_dist.training.state import create_state, make_optimizer
from tfbind_dist.training.augment import check_sizes as check_augmentation_sizes
from tfbind_dist.training.steps import make_logits_fn

DISPATCH_DEPTH = 4  # dispatches the host may run ahead of the devices (see training/pacing.py)


def is_primary() -> bool:
    return jax.process_index() == 0


def make_train_iterator(config: RunConfig, train: SplitData):
    """The configured loader's iterator over this process's part of each global batch (the stored windows, flanks
    included: the train step crops them)."""
    if train.flanked is not None:
        train = SplitData(train.flanked, train.labels, train.table)
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
    devices, processes and the training split, and the augmentations' stretch sizes against the sequence
    length. Returns the loaded splits and the device mesh."""
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
    check_augmentation_sizes(config.train, splits["train"].length)
    return splits, plan


class Member:
    """One run being trained (alone, or as a member of a pack): its run directory, data, checkpoints,
    metrics and progress. `step` is its last completed step."""

    def __init__(self, config: RunConfig, run: RunDir, splits: dict[str, SplitData], plan: MeshPlan):
        self.config, self.run, self.splits, self.plan = config, run, splits, plan
        self.tcfg = config.train
        self.length = splits["train"].length
        self.eval_batch = max(plan.num_devices, config.data.eval_batch_size // plan.num_devices * plan.num_devices)
        self.model = build_model(config.model.name, **config.model.overrides)
        self.tx = make_optimizer(self.tcfg)
        self.logits_fn = make_logits_fn(self.model, config.data.n_policy, plan)
        self.batches = make_train_iterator(config, splits["train"])
        self.checkpoints = RunCheckpoints(run.checkpoints)
        self.record: dict[str, Any] = {"best_auroc": -1.0, "best_step": 0, "wall_seconds": 0.0}
        self.pending: list[tuple[int, int, jax.Array, int | None]] = []  # (first step, steps, losses, member)
        self.stopped_early: int | None = None
        self.summary: dict[str, Any] | None = None
        self.step = self.start_step = 0
        self.started = time.time()
        self.label = f"{config.data.tf}/{config.model.name}"

    def fresh_state(self):
        return create_state(self.model, self.tx, self.length, self.tcfg.seed)

    def resume(self, target_state):
        """The state to train from: the latest checkpoint's (its data position restored too), else `target_state`."""
        restored = self.checkpoints.restore_latest(target_state, self.batches)
        state = target_state
        if restored is not None:
            self.start_step, state, self.record = restored
            self.record["resumed_from"] = [*self.record.get("resumed_from", []), int(self.start_step)]
        self.step = self.start_step
        halt = self.tcfg.halt_after
        self.end_step = self.tcfg.steps if halt is None else min(self.tcfg.steps, self.block_end(self.start_step + halt))
        self.metrics = MetricsLog(self.run, resume_step=self.start_step, primary=is_primary())
        self.report("running", self.start_step)
        if restored is not None and self.out_of_patience():
            self.stopped_early = self.end_step = self.start_step  # killed between the last evaluation and the summary
        return state

    @property
    def training(self) -> bool:
        return self.step < self.end_step and self.stopped_early is None

    def block_end(self, step: int) -> int:
        """The last step of the dispatch that runs `step`: blocks of `steps_per_dispatch` counted from each
        evaluation, the last one cut short by the next. The grid depends on nothing else, so a run resumed
        from a checkpoint (always at an evaluation) dispatches exactly the blocks an uninterrupted run does,
        and `halt_after` stops at the end of a block."""
        every, per_dispatch = self.tcfg.eval_every, self.tcfg.steps_per_dispatch
        evaluated = (step - 1) // every * every
        return min(evaluated + ((step - 1 - evaluated) // per_dispatch + 1) * per_dispatch, evaluated + every)

    def steps_to_boundary(self) -> int:
        """Steps until the end of this member's current block (see `block_end`), or its end if sooner."""
        return min(self.block_end(self.step + 1), self.end_step, self.tcfg.steps) - self.step

    def at_evaluation(self) -> bool:
        return self.step % self.tcfg.eval_every == 0 or self.step == self.tcfg.steps

    def out_of_patience(self) -> bool:
        """Early stopping: `patience` evaluations have passed without a better validation auROC."""
        return bool(self.tcfg.patience) and self.step - self.record["best_step"] >= self.tcfg.patience * self.tcfg.eval_every

    def next_batches(self, count: int) -> dict[str, np.ndarray]:
        """This member's next `count` batches, stacked on a leading axis."""
        batches = [next(self.batches) for _ in range(count)]
        return {key: np.stack([b[key] for b in batches]) for key in ("codes", "labels")}

    def report(self, status: str, step: int, **extra) -> None:
        if is_primary():
            self.run.write_progress({"status": status, "step": int(step), "steps": self.tcfg.steps,
                                     "best_auroc": self.record["best_auroc"], "best_step": self.record["best_step"],
                                     "resumed_from": self.record.get("resumed_from", []), **extra})

    def flush_train_losses(self) -> float:
        if not self.pending:
            return float("nan")
        last = float("nan")
        for first, count, losses, index in self.pending:
            values = np.asarray(jax.device_get(losses if index is None else losses[:, index]))
            for offset, value in enumerate(values[:count]):
                self.metrics.add(first + offset, "train", {"loss": value})
            last = float(values[count - 1])
        self.pending.clear()
        return last

    def evaluate_and_checkpoint(self, state, watchdog: StallWatchdog) -> dict[str, float]:
        """Validation metrics at this step; the best and latest checkpoints; early stopping."""
        with watchdog.phase(f"evaluation of {self.label}", self.step):
            last_loss = self.flush_train_losses()
            valid = evaluate_split(self.logits_fn, state.params, state.batch_stats, self.splits["valid"], self.plan,
                                   self.eval_batch)
        self.metrics.add(self.step, "valid", valid)
        self.account_wall_time()
        with watchdog.phase(f"checkpoint of {self.label}", self.step):
            self.metrics.flush()  # first: a checkpoint never gets ahead of the metrics a resume keeps
            if valid["auroc"] > self.record["best_auroc"]:
                self.record.update(best_auroc=valid["auroc"], best_step=self.step)
                self.checkpoints.save_best(self.step, state, self.record)
            self.checkpoints.save_latest(self.step, state, self.batches, self.record)
        self.report("running", self.step, valid_auroc=valid["auroc"])
        if self.out_of_patience():
            self.stopped_early = self.step
        return {"loss": last_loss, **valid}

    def account_wall_time(self) -> None:
        self.record["wall_seconds"] += time.time() - self.started
        self.started = time.time()

    def halt(self, state, watchdog: StallWatchdog, stopped_by: str | None = None) -> dict[str, Any]:
        """Leave a resumable checkpoint at this exact step (`train.halt_after`, or a signal `stopped_by`)."""
        with watchdog.phase(f"checkpoint of {self.label}", self.step):
            self.flush_train_losses()
            self.metrics.flush()
            if self.step > self.start_step and self.step % self.tcfg.eval_every:
                self.account_wall_time()
                self.checkpoints.save_latest(self.step, state, self.batches, self.record)
            self.checkpoints.wait()
        self.close()
        status = "halted" if stopped_by is None else "preempted"
        self.report(status, self.step)
        extra = {} if stopped_by is None else {"signal": stopped_by}
        return {"status": status, "step": self.step, "tf": self.config.data.tf, "model": self.config.model.name,
                **extra}

    def finish(self, state, watchdog: StallWatchdog, pack_size: int) -> dict[str, Any]:
        """Test metrics of the best checkpoint, the learning curve and the run summary."""
        cfg = self.config
        final_step = self.stopped_early or self.tcfg.steps
        with watchdog.phase(f"checkpoint of {self.label}", final_step):
            self.checkpoints.wait()
            best_step, best_state = self.checkpoints.restore_best(state)
        with watchdog.phase(f"test evaluation of {self.label}", final_step):
            test = evaluate_split(self.logits_fn, best_state.params, best_state.batch_stats, self.splits["test"],
                                  self.plan, self.eval_batch)
        self.metrics.add(best_step, "test", test)
        self.metrics.flush()
        self.account_wall_time()
        summary = {
            "status": "finished",
            "tf": cfg.data.tf,
            "model": cfg.model.name,
            "steps": self.tcfg.steps,
            "stopped_early_at": self.stopped_early,
            "best_step": int(best_step),
            "best_valid_auroc": float(self.record["best_auroc"]),
            "test_auroc": test["auroc"],
            "test_auprc": test["auprc"],
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "num_devices": self.plan.num_devices,
            "num_processes": jax.process_count(),
            "pack_size": pack_size,
            "wall_seconds": round(self.record["wall_seconds"], 2),
            "data": str(cfg.data.path),
            "synthetic_data": is_synthetic(cfg.data.path),
            "host": socket.gethostname(),
            "train_rows": len(self.splits["train"]),
            "resumed_from": self.record.get("resumed_from", []),
            "length": self.length,
        }
        if self.tcfg.with_baseline:
            from tfbind_dist.training.kmer_baseline import fit_composition_baseline, fit_kmer_baseline

            baseline = fit_kmer_baseline(self.splits, seed=self.tcfg.seed)
            composition = fit_composition_baseline(self.splits, seed=self.tcfg.seed)
            summary.update(baseline_valid_auroc=baseline.valid_auroc, baseline_test_auroc=baseline.test_auroc,
                           baseline=baseline.description, composition_valid_auroc=composition.valid_auroc,
                           composition_test_auroc=composition.test_auroc)
        if is_primary():
            figure, axes = detached((11, 4), 1, 2)
            plot_learning_curve(self.metrics.frame(), f"{cfg.data.tf} {cfg.model.name}", axes=axes[0])
            save_figure(figure, self.run.learning_curve, dpi=110)
            self.run.write_summary(summary)
        self.report("finished", final_step)
        self.close()
        return summary

    def close(self) -> None:
        self.checkpoints.close()
        self.metrics.close()


def train_and_evaluate(config: RunConfig, workdir: str | Path, *, progress: bool = True, devices=None,
                       preemptible: bool = False) -> dict[str, Any]:
    """Train one TF model on every visible device; resume if `workdir` holds a checkpoint.

    Returns the run summary (also written to `workdir/summary.json`). With
    `train.halt_after`, stops early after that many steps with a resumable checkpoint
    and returns a summary whose `status` is "halted". `devices` restricts the mesh
    (default: every device of every process). `preemptible`: SIGTERM or SIGINT finishes the step in
    flight, checkpoints it within `train.preempt_grace` seconds and returns status "preempted"
    (`training/preemption.py`).
    """
    return _train_runs([config], [workdir], packed=False, progress=progress, devices=devices,
                       preemptible=preemptible)[0]


def train_pack(configs: Sequence[RunConfig], workdirs: Sequence[str | Path], *, progress: bool = True,
               devices=None, preemptible: bool = False) -> list[dict[str, Any]]:
    """Train several runs of one architecture and batch shape as one vmapped program, each into its own
    run directory (see `training/packing.py` for what members may differ in). Returns their summaries,
    in order; finished members are not trained again, the others resume from their own checkpoints."""
    if jax.process_count() > 1:
        raise ConfigError("a pack runs in one process; run multi-host jobs unpacked (pack: 1)")
    check_packable(configs)
    return _train_runs(configs, workdirs, packed=True, progress=progress, devices=devices, preemptible=preemptible)


def _train_runs(configs: Sequence[RunConfig], workdirs: Sequence[str | Path], *, packed: bool, progress: bool,
                devices, preemptible: bool = False) -> list[dict[str, Any]]:
    if len(set(map(str, workdirs))) != len(workdirs):
        raise ConfigError("the runs of one pack need a run directory each")
    runs = [RunDir(w) for w in workdirs]
    configs = [with_absolute_data_path(c).validate() for c in configs]
    for run, config in zip(runs, configs):
        run.check_config(config)
    summaries: list[dict[str, Any] | None] = [run.summary() if run.is_finished() else None for run in runs]
    todo = [i for i, s in enumerate(summaries) if s is None]
    if not todo:
        return summaries
    inputs = {i: validate_inputs(configs[i], workdirs[i], devices) for i in todo}
    plan = inputs[todo[0]][1]
    lengths = {inputs[i][0]["train"].length for i in todo}
    if len(lengths) > 1:
        raise ConfigError(f"the runs of one pack need one sequence length; their data have lengths {sorted(lengths)}")
    if is_primary():
        for i in todo:
            runs[i].create(configs[i], sequence_length=inputs[i][0]["train"].length)
    members = [Member(configs[i], runs[i], inputs[i][0], plan) for i in todo]
    if packed:  # one compiled evaluation for the pack: inference never uses the members' dropout rates
        for member in members[1:]:
            member.logits_fn = members[0].logits_fn
    stop = StopRequest(members[0].tcfg.preempt_grace, _runs_label(members)) if preemptible else None
    try:
        with stop_on_signals(stop):
            for i, summary in zip(todo, _train(members, plan, packed=packed, progress=progress, stop=stop)):
                summaries[i] = summary
    except BaseException as err:
        if storage_fault(err) is not None:  # a full disk or refused write: stop orbax's threads quietly
            for member in members:
                member.checkpoints.abandon()
        for member in members:
            if hasattr(member, "metrics"):  # resumed: its TensorBoard events have a local staging folder
                member.metrics.discard()
        raise
    return summaries


def _runs_label(members: list[Member]) -> str:
    """What the console calls the runs trained together: `CTCF/conv_v2`, or `a pack of 2 (CTCF/..., ZNF24/...)`."""
    if len(members) == 1:
        return members[0].label
    return f"a pack of {len(members)} ({', '.join(m.label for m in members)})"


def _train(members: list[Member], plan: MeshPlan, *, packed: bool, progress: bool,
           stop: StopRequest | None = None) -> list[dict[str, Any]]:
    """Resume every member from its latest checkpoint, train, evaluate and checkpoint each to its end (or,
    once `stop` is requested, to the end of the dispatch in flight); their summaries."""
    program = (PackedProgram if packed else SoloProgram)(members, plan)
    per_dispatch = members[0].tcfg.steps_per_dispatch
    results: list[dict[str, Any] | None] = [None] * len(members)
    lead = members[0]
    bar = tqdm(total=sum(m.tcfg.steps for m in members), initial=sum(m.start_step for m in members),
               disable=not (progress and is_primary()), unit="step", dynamic_ncols=True,
               desc=lead.label if len(members) == 1 else f"pack of {len(members)} {lead.config.model.name}")
    window = DispatchWindow(DISPATCH_DEPTH)
    watchdog = StallWatchdog(lead.tcfg.stall_timeout, label=f"training {_runs_label(members)}")
    dispatches = 0
    with watchdog:
        while True:
            for index, member in enumerate(members):  # stopped early, or resumed after its last evaluation
                if results[index] is None and not member.training and (member.stopped_early is not None
                                                                        or member.step == member.tcfg.steps):
                    results[index] = member.finish(program.member_state(index), watchdog, len(members))
            active = [m.training for m in members]
            if not any(active):
                break
            size = min(per_dispatch, *(m.steps_to_boundary() for m in members if m.training))
            losses = program.run(size, active)
            dispatches += 1
            window.push(losses)
            watchdog.progress(max(0, dispatches - window.depth))  # the oldest dispatch still in flight
            for index, member in enumerate(members):
                if active[index]:
                    member.pending.append((member.step + 1, size, losses, index if packed else None))
                    member.step += size
            bar.update(size * sum(active))
            for index, member in enumerate(members):
                if active[index] and member.at_evaluation():
                    window.drain()
                    shown = member.evaluate_and_checkpoint(program.member_state(index), watchdog)
                    bar.set_postfix_str(f"{member.label} step {member.step} loss={shown['loss']:.4f} "
                                        f"valid_auroc={shown['auroc']:.4f} best={member.record['best_auroc']:.4f}")
            if stop is not None and stop.requested(dispatches):
                for member in members:
                    member.end_step = min(member.end_step, member.step)
        bar.close()
        window.drain()
        for index, member in enumerate(members):
            if results[index] is None:  # halted (or stopped by a signal) before its end
                results[index] = member.halt(program.member_state(index), watchdog,
                                             stopped_by=None if stop is None else stop.signal_name)
    return results
