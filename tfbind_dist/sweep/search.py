"""Hyperparameter search on Ray Tune: `run_search(spec, out)`, resumable by running it again.

Ray Tune decides what to train and when to stop (its searchers, ASHA); the training is
the project's own: each trial starts the processes of `train_and_evaluate` through the
sweeps' launcher (`sweep.launch`), one run directory per TF under OUT/runs/<trial>/, and
reports every evaluation's validation auROC (mean over the TFs) to Tune by reading the
runs' metrics. A trial's runs are its whole state: a trial that Tune restarts (its node
died, or the driver was killed and the experiment restored) resumes them from their latest
checkpoints; finished trials are not run again.

    OUT/search.json              the spec (a re-run must match it)
    OUT/tune/                    Ray Tune's experiment (restored on a re-run)
    OUT/runs/<trial>/<TF>/       run directories
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

from tfbind_dist.config import ConfigError
from tfbind_dist.ray_utils import connect
from tfbind_dist.storage import AnyPath, as_path, is_remote, storage_env, write_text_atomic
from tfbind_dist.sweep.launch import start_processes
from tfbind_dist.sweep.search_report import METRIC, evaluations, trial_runs, write_leaderboard, write_search_report
from tfbind_dist.sweep.search_spec import SearchSpec

SPEC_FILE = "search.json"
EXPERIMENT = "tune"


def _run_trial(params: dict[str, Any], *, spec: SearchSpec, root: str, poll_seconds: float) -> None:
    """One trial (runs in Tune's trial actor, which holds no resources): start, watch and report its runs."""
    import ray
    from ray import tune
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    trial_id = tune.get_context().get_trial_id()
    runs = trial_runs(root, trial_id, spec.tfs)
    group = ray.util.get_current_placement_group()
    refs = []
    for k, (tf, run) in enumerate(runs.items()):
        place = lambda i, k=k: PlacementGroupSchedulingStrategy(  # noqa: E731
            group, placement_group_bundle_index=k * spec.hosts + i)
        refs += start_processes(spec.trial_config(params, tf).to_dict(), str(run.path), spec.hosts, bundle(spec),
                                place)
    last_step = spec.trial_config(params, spec.tfs[0]).train.steps
    reported = -1
    try:
        while True:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=poll_seconds)
            finished = len(done) == len(refs)
            if finished:
                ray.get(refs)  # a failed process fails the trial: Tune restarts it and its runs resume
            for record in evaluations(runs):
                # The last evaluation waits for the runs' ends: the scheduler stops a trial that reaches its
                # last step, which must not cut off the test evaluation and summary.
                if record["step"] > reported and (finished or record["step"] < last_step):
                    tune.report(record)
                    reported = record["step"]
            if finished:
                return
    finally:  # stopped by the scheduler (or failed): stop its training processes too
        for ref in refs:
            ray.cancel(ref, force=True)


def bundle(spec: SearchSpec) -> dict[str, float]:
    """Resources of one training process."""
    return {k: v for k, v in {"CPU": spec.cpus, "GPU": spec.gpus}.items() if v}


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


def _run_experiment(spec: SearchSpec, out: AnyPath, *, progress: bool, poll_seconds: float, max_failures: int):
    """Run (or continue) one Tune experiment under `out`; returns its ResultGrid."""
    from ray import tune

    trainable = tune.with_parameters(_run_trial, spec=spec, root=_storage_path(out), poll_seconds=poll_seconds)
    workers = [bundle(spec)] * (spec.hosts * len(spec.tfs))
    trainable = tune.with_resources(trainable, tune.PlacementGroupFactory(
        [{}, *workers], strategy="STRICT_SPREAD" if spec.hosts > 1 else "PACK"))
    experiment = f"{_storage_path(out).rstrip('/')}/{EXPERIMENT}"
    if tune.Tuner.can_restore(experiment):
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
    return tuner.fit()


def _check_spec(out: AnyPath, spec: SearchSpec) -> None:
    """Record the spec in a new search directory; refuse a directory that holds another search."""
    path = out / SPEC_FILE
    recorded = spec.to_dict()
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(recorded, default=str)):
            changed = sorted(k for k in recorded if json.dumps(old.get(k), default=str) != json.dumps(recorded[k], default=str))
            raise ConfigError(f"{out} holds search {old.get('name')!r} with a different {', '.join(changed)}; "
                              "use another --out, or the same spec and flags to continue it")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(recorded, indent=1, default=str))


def run_search(spec: SearchSpec, out: str | Path, *, address: str = "local", progress: bool = True,
               poll_seconds: float = 1.0, max_failures: int = 2) -> pd.DataFrame:
    """Run the search (or continue it, if OUT holds it), then write its reports; returns the leaderboard.

    `max_failures`: restarts of a trial whose process or node died (each resumes its runs).
    """
    out = as_path(out)
    _check_spec(out, spec)
    # Tune saves the experiment's state (its trials and their ids, which name the run directories) every
    # few seconds; a short period keeps a killed driver's re-run from losing a trial that had just started.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    connect(address, env_vars=storage_env())
    parts = [(spec, out)] if spec.objective == "mean" else [(replace(spec, tfs=(tf,)), out / tf) for tf in spec.tfs]
    tables = []
    for part, where in parts:
        started = time.time()
        results = _run_experiment(part, where, progress=progress, poll_seconds=poll_seconds,
                                  max_failures=max_failures)
        tables.append(write_search_report(part, where, results, wall_seconds=time.time() - started))
    if len(parts) == 1:
        return tables[0]
    combined = pd.concat([t.assign(search=p.tfs[0]) for t, (p, _) in zip(tables, parts)], ignore_index=True)
    write_leaderboard(combined, out)
    return combined
