"""Figures of per-base attributions (chapter figures 3-8, 3-9, 3-11, 3-13, 3-14, 3-15) and of motifs.

Every function takes (L, 4) arrays with columns A, C, G, T for one sequence of length L (or a
stack of them) and draws bases x positions heatmaps on a centred, symmetric diverging colour
scale so that gains (red) and losses (blue) read at a glance. Each draws on the `ax` it is given
or, without one, on a new pyplot figure (inline in a notebook), and returns the axes it drew on;
none chooses a matplotlib backend (`tfbind_dist.plotting`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tfbind_dist.data.encoding import ALPHABET, encode, one_hot
from tfbind_dist.plotting import user_axes, user_subplots

CMAP = "RdBu_r"
# The highlight fills the importance track but only outlines the heatmap, where a tint would shift its colours.
HIGHLIGHT_TRACK = dict(facecolor="gold", edgecolor="none", alpha=0.35)
HIGHLIGHT_HEATMAP = dict(facecolor="none", edgecolor="black", lw=2.0)
MAX_BASE_TICKS = 40  # spans up to this many positions are labelled base by base


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


def _track_above(ax, ratio: float = 0.7):
    """(track, main): `ax`'s place split into a short track above a main panel sharing its x axis."""
    spec = ax.get_subplotspec()
    if spec is None:  # axes placed by hand: the track goes just above them
        return ax.inset_axes((0.0, 1.06, 1.0, ratio), sharex=ax), ax
    figure = ax.figure
    ax.remove()
    grid = spec.subgridspec(2, 1, height_ratios=(ratio, 1.0))
    track = figure.add_subplot(grid[0])
    return track, figure.add_subplot(grid[1], sharex=track)


def plot_ism(delta, sequence: str, *, importance=None, ax=None, title: str = "",
             highlight: tuple[int, int] | None = None, window: tuple[int, int] | None = None):
    """ISM map (figures 3-8, 3-9, 3-11): an (L, 4) delta heatmap under its per-position importance track.

    `importance` defaults to the sum of |delta| over bases. `highlight` marks a [start, end)
    span (e.g. the motif match) on both panels, shaded on the track and outlined on the
    heatmap; `window` zooms to positions [a, b), and the colour scale follows the zoom.
    The given `ax` is split into the track above and the heatmap below; returns the heatmap's axes.
    """
    delta = _per_base(delta, sequence, "delta")
    importance = np.abs(delta).sum(-1) if importance is None else np.asarray(importance, dtype=np.float64)
    if importance.shape != (len(sequence),):
        raise ValueError(f"importance must have shape (L,) = ({len(sequence)},), got {importance.shape}")
    a, b = _span(window or (0, len(sequence)), len(sequence), "window")
    h0, h1 = _span(highlight, len(sequence), "highlight") if highlight is not None else (None, None)
    track, heat = _track_above(user_axes(ax, figsize=(min(14.0, max(7.0, 0.3 * (b - a))), 4.2)))
    positions = np.arange(a, b)
    track.plot(positions, importance[a:b], color="black", lw=1)
    track.fill_between(positions, importance[a:b], color="grey", alpha=0.3)
    track.set_ylabel("Importance")
    track.tick_params(labelbottom=False)
    track.set_title(title)
    image = _heatmap(heat, delta[a:b], a, _limit(delta[a:b]))
    heat.set_ylabel("Substituted base")
    _position_ticks(heat, sequence, a, b)
    heat.figure.colorbar(image, ax=[track, heat], label="Output change", fraction=0.025, pad=0.01, shrink=0.58,
                         anchor=(0.0, 0.0))  # beside the heatmap; track and heatmap keep one width
    if highlight is not None:
        track.axvspan(h0 - 0.5, h1 - 0.5, **HIGHLIGHT_TRACK)
        heat.axvspan(h0 - 0.5, h1 - 0.5, **HIGHLIGHT_HEATMAP)
    return heat


def plot_gradient_zoom(grad, sequence: str, start: int, end: int, *, ax=None, title: str = ""):
    """Gradients zoomed to [start, end) (figure 3-13), each cell annotated with its value; returns the axes."""
    grad = _per_base(grad, sequence, "grad")
    start, end = _span((start, end), len(sequence), "start, end")
    zoom = grad[start:end]
    vmax = _limit(zoom)
    ax = user_axes(ax, figsize=(max(5.0, 0.6 * (end - start) + 1.5), 3.2))
    image = _heatmap(ax, zoom, start, vmax)
    for (i, j), value in np.ndenumerate(zoom):
        ax.text(start + i, j, f"{value:.2g}", ha="center", va="center", fontsize=7,
                color="white" if abs(value) > 0.6 * vmax else "black")
    ax.set_xticks(range(start, end), list(sequence[start:end]), fontfamily="monospace")
    ax.set_xlabel(f"Sequence, positions {start}-{end - 1}")
    ax.set_xlim(start - 0.5, end - 0.5)
    ax.set_ylabel("Base")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, label="Gradient", shrink=0.9)
    return ax


def plot_gradient_grid(grads, sequences: list[str], *, axes=None, titles: list[str] | None = None,
                       title: str = ""):
    """One bases x positions gradient heatmap per sequence (figures 3-14, 3-15), on one shared colour scale.

    `axes`: one axes per sequence (default: a new figure with one row each); returns them.
    """
    grads = np.asarray(grads, dtype=np.float64)
    if grads.ndim != 3 or len(grads) != len(sequences) or len(sequences) == 0:
        raise ValueError(f"grads must have shape (K, L, 4) with K = len(sequences) = {len(sequences)} > 0, "
                         f"got {grads.shape}")
    for k, seq in enumerate(sequences):
        _per_base(grads[k], seq, f"grads[{k}]")
    if titles is not None and len(titles) != len(sequences):
        raise ValueError(f"titles must have one entry per sequence ({len(sequences)}), got {len(titles)}")
    length = grads.shape[1]
    if axes is None:
        _, grid = user_subplots(len(grads), 1, figsize=(min(14.0, max(7.0, 0.3 * length)), 1.0 + 1.1 * len(grads)))
        axes = grid[:, 0]
    axes = list(np.ravel(axes))
    if len(axes) != len(grads):
        raise ValueError(f"axes must hold one axes per sequence ({len(grads)}), got {len(axes)}")
    vmax = _limit(grads)
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
    axes[0].figure.colorbar(image, ax=axes, label="Gradient", shrink=0.8)
    axes[0].figure.suptitle(title)
    return axes


def plot_attribution_logo(attribution, sequence: str, *, ax=None, start: int = 0, end: int | None = None,
                          title: str = ""):
    """Sequence logo of the attribution at each observed base (attribution * one-hot), over [start, end).

    Letter height is the attribution: bases that raise the output stand above the
    axis, bases that lower it hang below. N positions are blank. Returns the axes.
    """
    import logomaker

    attribution = _per_base(attribution, sequence, "attribution")
    start, end = _span((start, len(sequence) if end is None else end), len(sequence), "start, end")
    observed = attribution * one_hot(encode([sequence])[0], n_policy="zeros")
    frame = pd.DataFrame(observed[start:end], columns=list(ALPHABET), index=np.arange(start, end))
    ax = user_axes(ax, figsize=(min(14.0, max(5.0, 0.3 * (end - start))), 2.8))
    logomaker.Logo(frame, ax=ax, color_scheme="classic", flip_below=False)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlim(start - 0.5, end - 0.5)
    ax.set_xlabel("Position")
    ax.set_ylabel("Attribution")
    ax.set_title(title)
    return ax


def information_content(probs: np.ndarray) -> np.ndarray:
    """(W, 4) letter heights in bits: each base's probability times the column's information content."""
    p = np.clip(np.asarray(probs, np.float64), 1e-9, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return p * (2.0 + (p * np.log2(p)).sum(axis=1, keepdims=True))


def plot_motif_match(contributions, match_probs, *, axes=None, offset: int = 0, title: str = "",
                     match_title: str = ""):
    """A discovered motif's contribution logo (CWM) above its JASPAR match's information-content logo.

    `contributions` is (W, 4) mean contribution per base; `match_probs` (V, 4) base probabilities
    already on the motif's strand (or None when nothing matched), aligned so that the motif starts
    at position `offset` of the match. `axes`: one per panel (two, or one without a match); by
    default a new figure. Returns the axes.
    """
    import logomaker

    panels = [(np.asarray(contributions), max(offset, 0), "Contribution", title)]
    if match_probs is not None:
        panels.append((information_content(match_probs), max(-offset, 0), "Bits", match_title))
    width = max(start + len(values) for values, start, _, _ in panels)
    if axes is None:
        _, grid = user_subplots(len(panels), 1, figsize=(max(5.0, 0.35 * width), 2.4 * len(panels)))
        axes = grid[:, 0]
    axes = list(np.ravel(axes))
    if len(axes) != len(panels):
        raise ValueError(f"axes must hold {len(panels)} axes (the motif{' and its match' * (len(panels) - 1)}), "
                         f"got {len(axes)}")
    for ax, (values, start, label, panel_title) in zip(axes, panels):
        frame = pd.DataFrame(values, columns=list(ALPHABET), index=np.arange(start, start + len(values)))
        logomaker.Logo(frame, ax=ax, color_scheme="classic", flip_below=False)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_xticks([])
        ax.set_ylabel(label)
        ax.set_title(panel_title, fontsize=10)
    return axes
