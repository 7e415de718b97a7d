"""Learning-curve figure of one run (chapter figure 3-17)."""
from __future__ import annotations

import pandas as pd

from tfbind_dist.plotting import user_subplots


def plot_learning_curve(metrics: pd.DataFrame, title: str, *, axes=None):
    """Loss per split (left) and validation accuracy / auROC / auPRC (right) against step.

    `metrics` is a run's metrics table (`RunDir.metrics()`); `axes` two axes (default: a new
    figure). Returns the two axes.
    """
    left, right = (axes if axes is not None else user_subplots(1, 2, figsize=(11, 4))[1][0])
    train = metrics[(metrics.split == "train") & (metrics.metric == "loss")].sort_values("step")
    if len(train):
        smooth = train.value.rolling(max(1, len(train) // 50), min_periods=1).mean()
        left.plot(train.step, train.value, color="tab:blue", alpha=0.25, lw=0.8)
        left.plot(train.step, smooth, color="tab:blue", label="train loss")
    for split, color in (("valid", "tab:orange"), ("test", "tab:green")):
        rows = metrics[(metrics.split == split) & (metrics.metric == "loss")].sort_values("step")
        if len(rows):
            left.plot(rows.step, rows.value, "o-", color=color, label=f"{split} loss")
    left.set(xlabel="Step", ylabel="Loss", title=f"{title}: loss")
    left.legend()
    for metric, style in (("accuracy", "--"), ("auroc", "-"), ("auprc", ":")):
        rows = metrics[(metrics.split == "valid") & (metrics.metric == metric)].sort_values("step")
        if len(rows):
            right.plot(rows.step, rows.value, style, marker="o", label=f"valid {metric}")
    right.set(xlabel="Step", ylabel="Value", ylim=(0.4, 1.0), title=f"{title}: validation")
    right.grid(alpha=0.3)
    right.legend(loc="lower right")
    return left, right
