"""Motif checks, descriptions and figures for a set of explained sequences (what `tfbind explain` writes)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tfbind_dist.data.encoding import encode
from tfbind_dist.interpret import motifs, plots
from tfbind_dist.interpret.summaries import describe_change, top_mutations
from tfbind_dist.plotting import detached

SIGNIFICANT_P = 1e-4


def motif_table(sequences: list[str], importance: np.ndarray, tf: str, n_policy: str = "uniform") -> pd.DataFrame:
    """Best JASPAR match of the TF per sequence, the hot window of `importance`, and whether they overlap."""
    codes = encode(sequences, n_policy=n_policy)
    match = motifs.best_match(codes, tf)
    width = int(match.end[0] - match.start[0])
    hot = motifs.hot_window(importance, width)
    return pd.DataFrame({
        "motif_start": match.start, "motif_end": match.end, "motif_strand": match.strand,
        "motif_score": match.score.round(3), "motif_p_value": match.p_value,
        "significant": match.p_value < SIGNIFICANT_P,
        "hot_start": hot, "hot_end": hot + width,
        "overlap": motifs.spans_overlap(match.start, match.end, hot, hot + width),
    })


def describe_top(delta: np.ndarray, sequence: str, reference: float, k: int = 3) -> list[str]:
    """The k strongest decreasing and increasing substitutions, as the chapter words them."""
    picks = top_mutations(delta, sequence, k, increasing=False) + top_mutations(delta, sequence, k, increasing=True)
    return [describe_change(m, reference) for m in picks]


def explanation_figures(sequences: list[str], arrays: dict[str, np.ndarray], table: pd.DataFrame | None, tf: str,
                        max_sequences: int = 3) -> dict[str, object]:
    """`tfbind explain`'s figures by file name: ISM heatmaps (motif highlighted), gradient grids, zooms and logos.

    Detached figures (`tfbind_dist.plotting`), for the caller to save; nothing is shown or written here.
    """
    figures: dict[str, object] = {}
    shown = range(min(max_sequences, len(sequences)))
    for name, values in arrays.items():
        if name == "prediction":
            continue
        if name == "ism":
            for i in shown:
                highlight = None
                if table is not None and table.significant[i]:
                    highlight = (int(table.motif_start[i]), int(table.motif_end[i]))
                fig, axes = detached((min(14.0, max(7.0, 0.3 * len(sequences[i]))), 4.2))
                plots.plot_ism(values[i], sequences[i], ax=axes[0, 0], highlight=highlight,
                               title=f"{tf} ISM, sequence {i} (p={arrays['prediction'][i]:.3f})")
                figures[f"ism_{i}.png"] = fig
            continue
        count = min(10, len(values))
        fig, axes = detached((min(14.0, max(7.0, 0.3 * values.shape[1])), 1.0 + 1.1 * count), count, 1)
        plots.plot_gradient_grid(values[:count], sequences[:count], axes=axes[:, 0], title=f"{tf} {name}",
                                 titles=[f"seq {i} p={arrays['prediction'][i]:.3f}" for i in range(count)])
        figures[f"{name}_grid.png"] = fig
        for i in shown:
            importance = np.abs(values[i]).sum(-1)
            start = int(motifs.hot_window(importance[None], 20)[0])
            end = min(len(sequences[i]), start + 20)
            fig, axes = detached((max(5.0, 0.6 * (end - start) + 1.5), 3.2))
            plots.plot_gradient_zoom(values[i], sequences[i], start, end, ax=axes[0, 0],
                                     title=f"{tf} {name}, sequence {i}")
            figures[f"{name}_zoom_{i}.png"] = fig
            logo_start, logo_end = max(0, start - 10), min(len(sequences[i]), end + 10)
            fig, axes = detached((min(14.0, max(5.0, 0.3 * (logo_end - logo_start))), 2.8))
            plots.plot_attribution_logo(values[i], sequences[i], ax=axes[0, 0], start=logo_start, end=logo_end,
                                        title=f"{tf} {name}, sequence {i}")
            figures[f"{name}_logo_{i}.png"] = fig
    return figures
