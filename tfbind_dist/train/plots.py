"""Learning-curve figure of one run (chapter figure 3-17)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tfbind_dist.storage import save_figure  # noqa: E402


def plot_learning_curve(metrics: pd.DataFrame, title: str, path: str | Path) -> None:
    """Loss per split (left) and validation accuracy / auROC / auPRC (right) against step."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
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
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
