"""Leaderboard and learning-curve figures over a directory of run directories."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tfbind_dist.errors import RunDirError
from tfbind_dist.experiment import write_leaderboard
from tfbind_dist.plotting import detached
from tfbind_dist.reference import reference_text
from tfbind_dist.rundir import SUMMARY, RunDir
from tfbind_dist.storage import as_path, is_remote, save_figure

LEADERBOARD_COLUMNS = ["run", "tf", "model", "seed", "data", "best_valid_auroc", "best_step", "test_auroc",
                       "reference", "wall_seconds", "num_devices", "node", "baseline_valid_auroc"]


def find_runs(root: str | Path) -> list[Path]:
    """Finished run directories at or below `root` (on object storage: `root` and one level down)."""
    root = as_path(root)
    if is_remote(root):  # a recursive listing of a bucket can be thousands of requests
        found = [*root.glob(SUMMARY), *root.glob(f"*/{SUMMARY}")]
    else:
        found = root.rglob(SUMMARY)
    return sorted(p.parent for p in found)


def leaderboard(root: str | Path) -> pd.DataFrame:
    rows = []
    root = as_path(root)
    for path in find_runs(root):
        run = RunDir(path)
        summary, config = run.summary(), run.load_config()
        synthetic = summary.get("synthetic_data", config.data.path == "synthetic")
        rows.append({
            "run": str(path.relative_to(root)) if path != root else path.name,
            "tf": summary["tf"], "model": summary["model"], "seed": config.train.seed,
            "data": "synthetic" if synthetic else "real",
            "best_valid_auroc": summary["best_valid_auroc"], "best_step": summary["best_step"],
            "test_auroc": summary["test_auroc"],
            # the chapter's and paper's figures are on real ChIP-seq data: not comparable with synthetic runs
            "reference": "- (synthetic data)" if synthetic else reference_text(summary["tf"], summary["model"]),
            "wall_seconds": summary["wall_seconds"], "num_devices": summary["num_devices"],
            "node": run.last_attempt().get("node") or summary.get("host", "local"),
            "baseline_valid_auroc": summary.get("baseline_valid_auroc"),
        })
    table = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    return table.sort_values("best_valid_auroc", ascending=False, ignore_index=True)


def learning_curves_figure(root: str | Path, table: pd.DataFrame):
    """One panel per run, ordered by best validation auROC (chapter figure 3-18); a detached figure."""
    n = max(1, len(table))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = detached((4 * cols, 3.2 * rows), rows, cols)
    for ax, run in zip(axes.flat, table.itertuples(index=False)):
        m = RunDir(as_path(root) / run.run).metrics()
        train = m[(m.split == "train") & (m.metric == "loss")].sort_values("step")
        if len(train):
            ax.plot(train.step, train.value.rolling(max(1, len(train) // 20), min_periods=1).mean(), label="train loss")
        for metric, style in (("loss", "-"), ("accuracy", "--"), ("auroc", ":")):
            v = m[(m.split == "valid") & (m.metric == metric)].sort_values("step")
            ax.plot(v.step, v.value, style, label=f"valid {metric}")
        ax.set(title=f"{run.tf} {run.model} ({run.best_valid_auroc:.3f})", ylim=(0, 1), xlabel="Step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(table):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return fig


def valid_auroc_figure(root: str | Path, table: pd.DataFrame):
    """Validation auROC against step, one line per run (chapter figure 3-20); a detached figure."""
    fig, axes = detached((8, 5))
    ax = axes[0, 0]
    for run in table.itertuples(index=False):
        m = RunDir(as_path(root) / run.run).metrics()
        v = m[(m.split == "valid") & (m.metric == "auroc")].sort_values("step")
        ax.plot(v.step, v.value, marker="o", ms=3, label=f"{run.model} ({run.best_valid_auroc:.3f})")
    ax.set(xlabel="Step", ylabel="auROC", title="Validation auROC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_report(root: str | Path) -> pd.DataFrame:
    """Write leaderboard.parquet, leaderboard.md, learning_curves.png (and valid_auroc.png when models differ)."""
    root = as_path(root)
    table = leaderboard(root)
    if table.empty:
        raise RunDirError(f"no finished runs (run directories with {SUMMARY}) under {root}")
    write_leaderboard(table, root)
    save_figure(learning_curves_figure(root, table), root / "learning_curves.png", dpi=100)
    if table.model.nunique() > 1:
        save_figure(valid_auroc_figure(root, table), root / "valid_auroc.png", dpi=100)
    return table
