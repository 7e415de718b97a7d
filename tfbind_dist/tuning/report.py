"""A search's results: leaderboard, learning curves, objective against each parameter, best recipe.

Read from the trials' run directories (the source of truth for what was trained) and
Tune's record of each trial's parameters and state.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import yaml

from tfbind_dist.experiment import job_id, write_leaderboard
from tfbind_dist.plotting import detached
from tfbind_dist.rundir import RunDir
from tfbind_dist.storage import AnyPath, as_path, save_figure, write_text_atomic
from tfbind_dist.tuning.spec import SearchSpec

RUNS = "runs"
METRIC = "valid_auroc"  # mean over a trial's TFs at one evaluation step
BEST_RECIPE = "best_recipe.yaml"


def trial_runs(root: AnyPath, spec: SearchSpec, params: dict[str, Any]) -> dict[str, RunDir]:
    """The run directory of each TF of a trial: OUT/runs/<job id>, named by the run's configuration as a
    sweep's jobs are, so trials that draw the same parameters share their runs."""
    return {tf: RunDir(as_path(root) / RUNS / job_id(spec.trial_config(params, tf))) for tf in spec.tfs}


def valid_curve(run: RunDir) -> dict[int, float]:
    """step -> validation auROC of one run, so far ({} before its first evaluation)."""
    try:
        metrics = run.metrics()
    except (FileNotFoundError, OSError):
        return {}
    valid = metrics[(metrics.split == "valid") & (metrics.metric == "auroc")]
    return dict(zip(valid.step.astype(int), valid.value.astype(float)))


def evaluations(runs: dict[str, RunDir]) -> list[dict[str, Any]]:
    """One record per step every run has evaluated: the mean valid auROC and each TF's."""
    return mean_curve({tf: valid_curve(run) for tf, run in runs.items()})


def mean_curve(curves: dict[str, dict[int, float]]) -> list[dict[str, Any]]:
    """`evaluations` of curves already read (TF -> step -> valid auROC)."""
    steps = sorted(set.intersection(*(set(c) for c in curves.values()))) if curves else []
    return [{"step": s, METRIC: sum(c[s] for c in curves.values()) / len(curves),
             **{f"{METRIC}_{tf}": c[s] for tf, c in curves.items()}} for s in steps]


def _trials(experiment: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(trial id, Tune status, parameters) of every trial of the experiment stored at `experiment` (a path or
    URL: Tune's own `experiment_path` drops the scheme of an s3:// one)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(experiment)
    return [(t.trial_id, t.status, dict(t.config)) for t in analysis.trials]


def trial_table(spec: SearchSpec, out: AnyPath, trials) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """One row per trial: state, objective (mean over TFs of each run's best valid auROC), steps, parameters;
    and each trial's evaluations (`mean_curve`)."""
    rows, counted, records = [], set(), {}
    for trial_id, status, params in sorted(trials, key=lambda t: t[0]):
        runs = trial_runs(out, spec, params)
        curves = {tf: valid_curve(run) for tf, run in runs.items()}
        finished = all(run.is_finished() for run in runs.values())
        best = {tf: max(c.values()) if c else float("nan") for tf, c in curves.items()}
        records[trial_id] = mean_curve(curves)
        row = {"trial": trial_id,
               "state": "finished" if finished else {"ERROR": "error", "PENDING": "pending"}.get(status, "stopped"),
               "objective": sum(best.values()) / len(best),
               # steps trained for this trial; a run it shares with an earlier trial (same parameters) counts there
               "steps": sum(max(curves[tf], default=0) for tf, run in runs.items() if str(run.path) not in counted),
               "last_step": max((r["step"] for r in records[trial_id]), default=0),
               **{k: params.get(k) for k in spec.space},
               **{f"valid_auroc_{tf}": v for tf, v in best.items()}}
        for tf, run in runs.items():
            summary = run.summary() or {}
            row[f"test_auroc_{tf}"] = summary.get("test_auroc")
        row["runs"] = " ".join(f"{RUNS}/{run.path.name}" for run in runs.values())
        counted |= {str(run.path) for run in runs.values()}
        rows.append(row)
    table = pd.DataFrame(rows)
    if rows:
        table = table.sort_values("objective", ascending=False, ignore_index=True, na_position="last")
    return table, records


def learning_curves_figure(spec: SearchSpec, table: pd.DataFrame, records: dict[str, list[dict[str, Any]]]):
    """Mean validation auROC against step, one line per trial (dashed: stopped early); a detached figure."""
    fig, axes = detached((7, 4.5))
    ax = axes[0, 0]
    for row in table.itertuples(index=False):
        curve = records[row.trial]
        if curve:
            ax.plot([r["step"] for r in curve], [r[METRIC] for r in curve],
                    "-" if row.state == "finished" else "--", marker=".", label=row.trial)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"valid auROC (mean over {', '.join(spec.tfs)})")
    ax.set_title(f"{spec.name}: trials (dashed: stopped by the scheduler)")
    if len(table) <= 12:
        ax.legend(fontsize=7)
    return fig


def objective_figure(spec: SearchSpec, table: pd.DataFrame):
    """The objective against each searched parameter (one panel each); a detached figure."""
    from matplotlib.ticker import NullFormatter

    keys = list(spec.space)
    table = table.sort_values(keys, key=lambda c: c.astype(str) if c.dtype == object else c)
    fig, axes = detached((3.6 * len(keys), 3.4), 1, len(keys))
    for ax, key in zip(axes[0], keys):
        domain = spec.space[key][0]
        for state, marker in (("finished", "o"), ("stopped", "x"), ("error", "s")):
            part = table[table.state == state]
            numeric = domain in ("uniform", "loguniform", "randint")
            x = part[key] if numeric else part[key].astype(str)
            ax.scatter(x, part.objective, marker=marker, label=state)
        if domain == "loguniform":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(key)
        ax.set_ylabel("objective (valid auROC)")
    axes[0][0].legend(fontsize=7)
    return fig


def best_trial(table: pd.DataFrame) -> pd.Series | None:
    """The best finished trial (the best of any trial if none finished)."""
    ranked = table.dropna(subset=["objective"])
    finished = ranked[ranked.state == "finished"]
    ranked = finished if len(finished) else ranked
    return ranked.iloc[0] if len(ranked) else None


def write_best_recipe(spec: SearchSpec, out: AnyPath, best: pd.Series) -> None:
    """The best trial's run config as a recipe `tfbind train --recipe` accepts."""
    params = {k: best[k].item() if hasattr(best[k], "item") else best[k] for k in spec.space}
    config = spec.trial_config(params, spec.tfs[0])
    header = (f"# Best trial {best.trial} of search {spec.name!r}: valid auROC {best.objective:.4f} "
              f"(mean over {', '.join(spec.tfs)}), {best.state}.\n"
              f"# Searched: {', '.join(f'{k}={v!r}' for k, v in params.items())}\n"
              f"# Train it: tfbind train --recipe {out / BEST_RECIPE} --tf TF --data DATA --out RUN\n")
    write_text_atomic(out / BEST_RECIPE, header + yaml.safe_dump(config.to_dict(), sort_keys=False))


def write_search_report(spec: SearchSpec, out: AnyPath, experiment: str, *, wall_seconds: float) -> pd.DataFrame:
    """Write the leaderboard, figures and best recipe of the experiment stored at `experiment`; print its summary."""
    table, records = trial_table(spec, out, _trials(experiment))
    write_leaderboard(table, out)
    if len(table):
        save_figure(learning_curves_figure(spec, table, records), out / "learning_curves.png", dpi=120)
        save_figure(objective_figure(spec, table), out / "objective_vs_params.png", dpi=120)
    best = best_trial(table)
    counts = table.state.value_counts().to_dict() if len(table) else {}
    print(f"search {spec.name} ({', '.join(spec.tfs)}): {len(table)} trials "
          f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), {int(table.steps.sum()) if len(table) else 0} "
          f"training steps, {wall_seconds:.0f} s", flush=True)
    if best is not None:
        write_best_recipe(spec, out, best)
        print(f"best trial {best.trial}: valid auROC {best.objective:.4f} -> {out / BEST_RECIPE}", flush=True)
    return table
