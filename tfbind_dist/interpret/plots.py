"""Figures of per-base attributions (chapter figures 3-8, 3-9, 3-11, 3-13, 3-14, 3-15).

Every function takes (L, 4) arrays with columns A, C, G, T for one sequence of
length L (or a stack of them), draws bases x positions heatmaps on a centred,
symmetric diverging colour scale so that gains (red) and losses (blue) read at
a glance, saves a PNG to `path` and returns nothing.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import logomaker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tfbind_dist.data.encoding import ALPHABET, encode, one_hot  # noqa: E402
from tfbind_dist.storage import save_figure  # noqa: E402

CMAP = "RdBu_r"
# The highlight fills the importance track but only outlines the heatmap, where a tint would shift its colours.
HIGHLIGHT_TRACK = dict(facecolor="gold", edgecolor="none", alpha=0.35)
HIGHLIGHT_HEATMAP = dict(facecolor="none", edgecolor="black", lw=2.0)
MAX_BASE_TICKS = 40  # spans up to this many positions are labelled base by base
DPI = 110


def _per_base(values, sequence: str, name: str) -> np.ndarray:
    """`values` as an (L, 4) float array for `sequence`, or a ValueError naming the mismatch."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(sequence), 4):
        raise ValueError(f"{name} must have shape (L, 4) = ({len(sequence)}, 4) to match the "
                         f"{len(sequence)}-base sequence, got {arr.shape}")
    return arr


def _span(span, length: int, name: str) -> tuple[int, int]:
    """Validate a half-open [a, b) span within a length-`length` sequence."""
    a, b = (int(v) for v in span)
    if not 0 <= a < b <= length:
        raise ValueError(f"{name} must satisfy 0 <= start < end <= {length}, got ({a}, {b})")
    return a, b


def _limit(values: np.ndarray) -> float:
    """Half-width of the symmetric colour scale (tiny but positive for all-zero input)."""
    return float(np.abs(values).max()) or 1e-12


def _heatmap(ax, values: np.ndarray, start: int, vmax: float):
    """Draw (n, 4) values as a 4 x n bases x positions heatmap whose x axis is sequence position."""
    n = len(values)
    image = ax.imshow(values.T, cmap=CMAP, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest",
                      extent=(start - 0.5, start + n - 0.5, 3.5, -0.5))
    ax.set_yticks(range(4), list(ALPHABET))
    return image


def _position_ticks(ax, sequence: str, start: int, end: int) -> None:
    """Label short spans with each position's base, long ones with positions."""
    if end - start <= MAX_BASE_TICKS:
        ax.set_xticks(range(start, end), list(sequence[start:end]), fontfamily="monospace")
        ax.set_xlabel(f"Sequence, positions {start}-{end - 1}")
    else:
        ax.set_xlabel("Position")
    ax.set_xlim(start - 0.5, end - 0.5)


def _save(fig, path) -> None:
    save_figure(fig, path, dpi=DPI)
    plt.close(fig)


def plot_ism(delta, importance, sequence: str, path, *, title: str = "",
             highlight: tuple[int, int] | None = None, window: tuple[int, int] | None = None) -> None:
    """ISM map (figures 3-8, 3-9, 3-11): per-position importance above an (L, 4) delta heatmap.

    `highlight` marks a [start, end) span (e.g. the motif match) on both panels, shaded
    on the track and outlined on the heatmap;
    `window` zooms to positions [a, b), and the colour scale follows the zoom.
    """
    delta = _per_base(delta, sequence, "delta")
    importance = np.asarray(importance, dtype=np.float64)
    if importance.shape != (len(sequence),):
        raise ValueError(f"importance must have shape (L,) = ({len(sequence)},), got {importance.shape}")
    a, b = _span(window or (0, len(sequence)), len(sequence), "window")
    fig = plt.figure(figsize=(min(14.0, max(7.0, 0.3 * (b - a))), 4.2), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.4), width_ratios=(1, 0.025))
    track = fig.add_subplot(grid[0, 0])
    heat = fig.add_subplot(grid[1, 0], sharex=track)
    fig.add_subplot(grid[0, 1]).axis("off")
    positions = np.arange(a, b)
    track.plot(positions, importance[a:b], color="black", lw=1)
    track.fill_between(positions, importance[a:b], color="grey", alpha=0.3)
    track.set_ylabel("Importance")
    track.tick_params(labelbottom=False)
    track.set_title(title)
    image = _heatmap(heat, delta[a:b], a, _limit(delta[a:b]))
    heat.set_ylabel("Substituted base")
    _position_ticks(heat, sequence, a, b)
    fig.colorbar(image, cax=fig.add_subplot(grid[1, 1]), label="Output change")
    if highlight is not None:
        h0, h1 = _span(highlight, len(sequence), "highlight")
        track.axvspan(h0 - 0.5, h1 - 0.5, **HIGHLIGHT_TRACK)
        heat.axvspan(h0 - 0.5, h1 - 0.5, **HIGHLIGHT_HEATMAP)
    _save(fig, path)


def plot_gradient_zoom(grad, sequence: str, start: int, end: int, path, *, title: str = "") -> None:
    """Gradients zoomed to [start, end) (figure 3-13), each cell annotated with its value."""
    grad = _per_base(grad, sequence, "grad")
    start, end = _span((start, end), len(sequence), "start, end")
    zoom = grad[start:end]
    vmax = _limit(zoom)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * (end - start) + 1.5), 3.2), layout="constrained")
    image = _heatmap(ax, zoom, start, vmax)
    for (i, j), value in np.ndenumerate(zoom):
        ax.text(start + i, j, f"{value:.2g}", ha="center", va="center", fontsize=7,
                color="white" if abs(value) > 0.6 * vmax else "black")
    ax.set_xticks(range(start, end), list(sequence[start:end]), fontfamily="monospace")
    ax.set_xlabel(f"Sequence, positions {start}-{end - 1}")
    ax.set_xlim(start - 0.5, end - 0.5)
    ax.set_ylabel("Base")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="Gradient", shrink=0.9)
    _save(fig, path)


def plot_gradient_grid(grads, sequences: list[str], path, *, titles: list[str] | None = None,
                       title: str = "") -> None:
    """One bases x positions gradient heatmap per sequence (figures 3-14, 3-15), on one shared colour scale."""
    grads = np.asarray(grads, dtype=np.float64)
    if grads.ndim != 3 or len(grads) != len(sequences) or len(sequences) == 0:
        raise ValueError(f"grads must have shape (K, L, 4) with K = len(sequences) = {len(sequences)} > 0, "
                         f"got {grads.shape}")
    for k, seq in enumerate(sequences):
        _per_base(grads[k], seq, f"grads[{k}]")
    if titles is not None and len(titles) != len(sequences):
        raise ValueError(f"titles must have one entry per sequence ({len(sequences)}), got {len(titles)}")
    length = grads.shape[1]
    vmax = _limit(grads)
    fig, axes = plt.subplots(len(grads), 1, figsize=(min(14.0, max(7.0, 0.3 * length)), 1.0 + 1.1 * len(grads)),
                             squeeze=False, layout="constrained")
    axes = axes[:, 0]
    for k, ax in enumerate(axes):
        image = _heatmap(ax, grads[k], 0, vmax)
        _position_ticks(ax, sequences[k], 0, length)  # short rows show their own bases
        ax.tick_params(axis="y", labelsize=7)
        if titles is not None:
            ax.set_title(titles[k], fontsize=9, loc="left")
        if ax is not axes[-1]:
            ax.set_xlabel("")
            if length > MAX_BASE_TICKS:
                ax.tick_params(labelbottom=False)
    fig.colorbar(image, ax=list(axes), label="Gradient", shrink=0.8)
    fig.suptitle(title)
    _save(fig, path)


def plot_attribution_logo(attribution, sequence: str, path, *, start: int = 0, end: int | None = None,
                          title: str = "") -> None:
    """Sequence logo of the attribution at each observed base (attribution * one-hot), over [start, end).

    Letter height is the attribution: bases that raise the output stand above the
    axis, bases that lower it hang below. N positions are blank.
    """
    attribution = _per_base(attribution, sequence, "attribution")
    start, end = _span((start, len(sequence) if end is None else end), len(sequence), "start, end")
    observed = attribution * one_hot(encode([sequence])[0], n_policy="zeros")
    frame = pd.DataFrame(observed[start:end], columns=list(ALPHABET), index=np.arange(start, end))
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.3 * (end - start))), 2.8), layout="constrained")
    logomaker.Logo(frame, ax=ax, color_scheme="classic", flip_below=False)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlim(start - 0.5, end - 0.5)
    ax.set_xlabel("Position")
    ax.set_ylabel("Attribution")
    ax.set_title(title)
    _save(fig, path)


def information_content(probs: np.ndarray) -> np.ndarray:
    """(W, 4) letter heights in bits: each base's probability times the column's information content."""
    p = np.clip(np.asarray(probs, np.float64), 1e-9, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return p * (2.0 + (p * np.log2(p)).sum(axis=1, keepdims=True))


def plot_motif_match(contributions, match_probs, path, *, offset: int = 0, title: str = "",
                     match_title: str = "") -> None:
    """A discovered motif's contribution logo (CWM) above its JASPAR match's information-content logo.

    `contributions` is (W, 4) mean contribution per base; `match_probs` (V, 4) base probabilities
    already on the motif's strand (or None when nothing matched), aligned so that the motif starts
    at position `offset` of the match.
    """
    panels = [(np.asarray(contributions), max(offset, 0), "Contribution", title)]
    if match_probs is not None:
        panels.append((information_content(match_probs), max(-offset, 0), "Bits", match_title))
    width = max(start + len(values) for values, start, _, _ in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(5.0, 0.35 * width), 2.4 * len(panels)),
                             layout="constrained", squeeze=False)
    for ax, (values, start, label, panel_title) in zip(axes[:, 0], panels):
        frame = pd.DataFrame(values, columns=list(ALPHABET), index=np.arange(start, start + len(values)))
        logomaker.Logo(frame, ax=ax, color_scheme="classic", flip_below=False)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_xticks([])
        ax.set_ylabel(label)
        ax.set_title(panel_title, fontsize=10)
    _save(fig, path)
