"""Hyperparameter search on Ray Tune: `run_search(spec, out)`, resumable by running it again.

Ray Tune decides what to train and when to stop (its searchers, ASHA); the training is
the project's own: each trial starts the processes of `train_and_evaluate` through the
shared launcher (`tfbind_dist.launch`), or with `pack: true` one process training all its
TFs as one packed program (`train_pack`), one run directory per TF under OUT/runs/ (named by its
configuration, so trials that draw the same parameters share it: see `RunClaims`), and
reports every evaluation's validation auROC (mean over the TFs) to Tune by reading the
runs' metrics. A trial's runs are its whole state: a trial that Tune restarts (its node
died, or the driver was killed and the experiment restored) resumes them from their latest
checkpoints; finished trials are not run again.

    OUT/search.json              the spec (a re-run must match it)
    OUT/tune/                    Ray Tune's experiment (restored on a re-run)
    OUT/runs/<job id>/           run directories (`{TF}-{model}-s{seed}-{hash}`, as in sweeps)
    OUT/leaderboard.{parquet,md}, learning_curves.png, objective_vs_params.png, best_recipe.yaml
With `objective: per_tf`, each TF has this layout under OUT/<TF>/ and OUT/leaderboard.* lists all.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from tfbind_dist.errors import ConfigError
from tfbind_dist.experiment import write_leaderboard
from tfbind_dist.launch import start_pack, start_processes
from tfbind_dist.ray_utils import connect
from tfbind_dist.storage import AnyPath, as_path, is_remote, storage_env, write_text_atomic
from tfbind_dist.tuning.report import METRIC, evaluations, trial_runs, write_search_report
from tfbind_dist.tuning.spec import SearchSpec

SPEC_FILE = "search.json"
EXPERIMENT = "tune"


def new_reports(records: list[dict[str, Any]], reported: int, last_step: int, finished: bool) -> list[dict[str, Any]]:
    """The evaluation records to report now: those after step `reported`, but the last step's only once the
    runs have finished (the scheduler stops a trial that reaches its last step, which must not cut off the
    runs' test evaluation and summary)."""
    return [r for r in records if r["step"] > reported and (finished or r["step"] < last_step)]


class RunClaims:
    """Which live trial trains each run directory (a Ray actor, one per experiment run).

    Trials that draw the same parameters share their runs (OUT/runs/<job id>): the first to claim a run
    trains it; the others follow its evaluations, and take it over (resuming from its checkpoint) if
    the trial training it ends first, e.g. stopped by the scheduler.
    """

    def __init__(self):
        self.owners: dict[str, str] = {}

    def claim(self, run: str, trial_id: str) -> bool:
        return self.owners.setdefault(run, trial_id) == trial_id

    def release(self, runs: list[str], trial_id: str) -> None:
        for run in runs:
            if self.owners.get(run) == trial_id:
                del self.owners[run]


def _run_trial(params: dict[str, Any], *, spec: SearchSpec, root: str, claims, poll_seconds: float) -> None:
    """One trial (runs in Tune's trial actor, which holds no resources): train or follow its runs, report them."""
    import ray
    from ray import tune
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    trial_id = tune.get_context().get_trial_id()
    runs = trial_runs(root, spec, params)
    group = ray.util.get_current_placement_group()
    refs: dict[str, list] = {}  # TF -> this trial's processes training its run

    def place(bundle: int):
        return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle)

    def start(claimed: list[tuple[int, str, Any]]) -> list:
        """Start training the runs this trial has just claimed: one packed process, or processes per run."""
        if spec.pack:
            ref = start_pack([spec.trial_config(params, tf).to_dict() for _, tf, _ in claimed],
                             [str(run.path) for _, _, run in claimed], spec.resources, place(0))
            refs.update({tf: [ref] for _, tf, _ in claimed})
            return [ref]
        for k, tf, run in claimed:
            refs[tf] = start_processes(spec.trial_config(params, tf).to_dict(), str(run.path), spec.resources,
                                       lambda i: place(k * spec.resources.hosts + i))
        return [ref for _, tf, _ in claimed for ref in refs[tf]]

    last_step = spec.trial_config(params, spec.tfs[0]).train.steps
    reported, seen, active = -1, None, []
    try:
        while True:
            claimed = [(k, tf, run) for k, (tf, run) in enumerate(runs.items())
                       if tf not in refs and not run.is_finished()
                       and ray.get(claims.claim.remote(str(run.path), trial_id))]
            if claimed:
                active += start(claimed)
            if active:
                done, active = ray.wait(active, num_returns=len(active), timeout=poll_seconds)
                ray.get(done)  # a failed process fails the trial at once: Tune restarts it and its runs resume
            else:  # following runs another trial trains
                time.sleep(poll_seconds)
            finished = not active and all(run.is_finished() for run in runs.values())
            progress = [run.progress().get("step") for run in runs.values()]
            if progress != seen or finished:  # metrics are read only after a new evaluation
                seen = progress
                for record in new_reports(evaluations(runs), reported, last_step, finished):
                    tune.report(record)
                    reported = record["step"]
            if finished:
                return
    finally:  # stopped by the scheduler (or failed): stop its training processes, let another trial take its runs
        for ref in {ref for group_refs in refs.values() for ref in group_refs}:
            ray.cancel(ref, force=True)
        claims.release.remote([str(run.path) for tf, run in runs.items() if tf in refs], trial_id)


def _searcher(spec: SearchSpec):
    if spec.searcher == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=spec.seed))
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=spec.seed, max_concurrent=spec.max_concurrent)


def _scheduler(spec: SearchSpec):
    if spec.scheduler.name == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="step", max_t=spec.max_steps(), grace_period=spec.grace_steps(),
                         reduction_factor=spec.scheduler.reduction_factor)


def _storage_path(out: AnyPath) -> str:
    return str(out) if is_remote(out) else str(Path(out).absolute())


def _run_experiment(spec: SearchSpec, out: AnyPath, *, progress: bool, poll_seconds: float, max_failures: int) -> str:
    """Run (or continue) one Tune experiment under `out`; returns where it is stored."""
    import ray
    from ray import tune
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # on the driver's node: the experiment lives as long as that node does, whichever other node is lost
    claims = ray.remote(num_cpus=0)(RunClaims).options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=False)).remote()
    trainable = tune.with_parameters(_run_trial, spec=spec, root=_storage_path(out), claims=claims,
                                     poll_seconds=poll_seconds)
    workers = [spec.resources.bundle()] * spec.trial_processes()
    trainable = tune.with_resources(trainable, tune.PlacementGroupFactory(
        [{}, *workers], strategy="STRICT_SPREAD" if spec.resources.hosts > 1 else "PACK"))
    experiment = f"{_storage_path(out).rstrip('/')}/{EXPERIMENT}"
    # Tune saves the experiment's state a few seconds after it starts; a driver killed before that left
    # nothing to restore, and a new experiment starts (its runs resume wherever it draws the same parameters).
    if tune.Tuner.can_restore(experiment) and any(as_path(experiment).glob("experiment_state-*.json")):
        print(f"continuing the search in {experiment}", flush=True)
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=spec.tune_space(),
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", search_alg=_searcher(spec),
                                        scheduler=_scheduler(spec), num_samples=spec.num_samples,
                                        max_concurrent_trials=(spec.max_concurrent or None) if spec.searcher != "random"
                                        else None),  # the random searcher limits itself
            run_config=tune.RunConfig(name=EXPERIMENT, storage_path=_storage_path(out), verbose=1 if progress else 0,
                                      failure_config=tune.FailureConfig(max_failures=max_failures)))
    tuner.fit()
    return experiment


def _check_spec(out: AnyPath, spec: SearchSpec) -> None:
    """Record the spec in a new search directory; refuse a directory that holds another search."""
    path = out / SPEC_FILE
    recorded = json.loads(json.dumps(spec.to_dict(), default=str))  # as it reads back
    if path.exists():
        old = json.loads(path.read_text())
        if old != recorded:
            changed = sorted(k for k in recorded if old.get(k) != recorded[k])
            raise ConfigError(f"{out} holds search {old.get('name')!r} with a different {', '.join(changed)}; "
                              "use another --out, or the same spec and flags to continue it")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(recorded, indent=1))


def run_search(spec: SearchSpec, out: str | Path, *, address: str = "local", progress: bool = True,
               poll_seconds: float = 1.0, max_failures: int = 2) -> pd.DataFrame:
    """Run the search (or continue it, if OUT holds it), then write its reports; returns the leaderboard.

    `max_failures`: restarts of a trial whose process or node died (each resumes its runs).
    """
    out = as_path(out)
    _check_spec(out, spec)
    # Tune saves the experiment's state (its trials, their parameters and searcher) every few seconds; a short
    # period keeps a killed driver's re-run from losing a trial that had just started.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    connect(address, env_vars=storage_env())
    parts = [(spec, out)] if spec.objective == "mean" else [(replace(spec, tfs=(tf,)), out / tf) for tf in spec.tfs]
    tables = []
    for part, where in parts:
        started = time.time()
        experiment = _run_experiment(part, where, progress=progress, poll_seconds=poll_seconds,
                                     max_failures=max_failures)
        tables.append(write_search_report(part, where, experiment, wall_seconds=time.time() - started))
    if len(parts) == 1:
        return tables[0]
    combined = pd.concat([t.assign(search=p.tfs[0]) for t, (p, _) in zip(tables, parts)], ignore_index=True)
    write_leaderboard(combined, out)
    return combined
