"""Figures and motif checks for a set of explained sequences (what `tfbind explain` writes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tfbind_dist.data.encoding import encode
from tfbind_dist.interpret import motifs, plots
from tfbind_dist.interpret.summaries import describe_change, top_mutations

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


def write_figures(out: Path, sequences: list[str], arrays: dict[str, np.ndarray], table: pd.DataFrame | None,
                  tf: str, max_sequences: int = 3) -> list[Path]:
    """ISM heatmaps (motif highlighted), gradient grids, zooms and logos; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    shown = range(min(max_sequences, len(sequences)))
    for name, values in arrays.items():
        if name == "prediction":
            continue
        if name == "ism":
            for i in shown:
                highlight = None
                if table is not None and table.significant[i]:
                    highlight = (int(table.motif_start[i]), int(table.motif_end[i]))
                path = out / f"ism_{i}.png"
                plots.plot_ism(values[i], np.abs(values[i]).sum(-1), sequences[i], path,
                               title=f"{tf} ISM, sequence {i} (p={arrays['prediction'][i]:.3f})", highlight=highlight)
                written.append(path)
            continue
        grid = out / f"{name}_grid.png"
        plots.plot_gradient_grid(values[:10], sequences[:10], grid, title=f"{tf} {name}",
                                 titles=[f"seq {i} p={arrays['prediction'][i]:.3f}" for i in range(min(10, len(values)))])
        written.append(grid)
        for i in shown:
            importance = np.abs(values[i]).sum(-1)
            centre = int(motifs.hot_window(importance[None], 20)[0])
            start, end = max(0, centre), min(len(sequences[i]), centre + 20)
            zoom, logo = out / f"{name}_zoom_{i}.png", out / f"{name}_logo_{i}.png"
            plots.plot_gradient_zoom(values[i], sequences[i], start, end, zoom, title=f"{tf} {name}, sequence {i}")
            plots.plot_attribution_logo(values[i], sequences[i], logo, start=max(0, start - 10),
                                        end=min(len(sequences[i]), end + 10), title=f"{tf} {name}, sequence {i}")
            written += [zoom, logo]
    return written
