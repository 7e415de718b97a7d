import numpy as np
import pytest

from tfbind_dist.interpret import plots
from tfbind_dist.plotting import detached
from tfbind_dist.storage import save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _draw(path, plot, *args, panels=1, **kwargs):
    """Draw `plot` on a detached figure (one axes per panel) and save it to `path`; the axes it returned."""
    figure, axes = detached((10, 4), panels, 1)
    target = {"ax": axes[0, 0]} if panels == 1 else {"axes": axes[:, 0]}
    drawn = plot(*args, **target, **kwargs)
    save_figure(figure, path)
    return drawn


def _assert_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert min_bytes < len(data) < 5_000_000


def _sequence(rng, length):
    return "".join(rng.choice(list("ACGT"), size=length))


def _ism_inputs(length=60, seed=0):
    rng = np.random.default_rng(seed)
    sequence = _sequence(rng, length)
    delta = rng.normal(scale=0.05, size=(length, 4))
    delta[np.arange(length), ["ACGT".index(b) for b in sequence]] = 0.0
    return delta, np.abs(delta).sum(axis=1), sequence


def test_plot_ism_writes_png_with_highlight_and_window(tmp_path):
    delta, importance, sequence = _ism_inputs()
    _draw(tmp_path / "full.png", plots.plot_ism, delta, sequence, importance=importance, title="ISM")
    _draw(tmp_path / "marked.png", plots.plot_ism, delta, sequence, importance=importance, title="ISM",
          highlight=(20, 35))
    heat = _draw(tmp_path / "zoom.png", plots.plot_ism, delta, sequence, highlight=(20, 35), window=(15, 40))
    assert heat.get_xlim() == (14.5, 39.5) and len(heat.figure.axes) == 3  # track, heatmap, colour bar
    for name in ("full", "marked", "zoom"):
        _assert_png(tmp_path / f"{name}.png")
    assert (tmp_path / "marked.png").read_bytes() != (tmp_path / "full.png").read_bytes()


def test_plot_ism_accepts_all_zero_deltas(tmp_path):
    _draw(tmp_path / "zero.png", plots.plot_ism, np.zeros((30, 4)), "A" * 30)
    _assert_png(tmp_path / "zero.png")


def test_plot_ism_rejects_bad_shapes_and_spans(tmp_path):
    delta, importance, sequence = _ism_inputs()
    with pytest.raises(ValueError, match=r"delta must have shape \(L, 4\) = \(60, 4\).*got \(59, 4\)"):
        _draw(tmp_path / "x.png", plots.plot_ism, delta[:-1], sequence)
    with pytest.raises(ValueError, match=r"delta must have shape \(L, 4\)"):
        _draw(tmp_path / "x.png", plots.plot_ism, delta.T, sequence)
    with pytest.raises(ValueError, match=r"importance must have shape \(L,\) = \(60,\)"):
        _draw(tmp_path / "x.png", plots.plot_ism, delta, sequence, importance=importance[:10])
    with pytest.raises(ValueError, match="window must satisfy"):
        _draw(tmp_path / "x.png", plots.plot_ism, delta, sequence, window=(40, 20))
    with pytest.raises(ValueError, match="highlight must satisfy"):
        _draw(tmp_path / "x.png", plots.plot_ism, delta, sequence, highlight=(50, 70))
    assert not (tmp_path / "x.png").exists()


def test_plot_gradient_zoom(tmp_path):
    rng = np.random.default_rng(1)
    sequence = _sequence(rng, 80)
    grad = rng.normal(size=(80, 4))
    ax = _draw(tmp_path / "zoom.png", plots.plot_gradient_zoom, grad, sequence, 30, 50, title="Gradient zoom")
    _assert_png(tmp_path / "zoom.png")
    assert [t.get_text() for t in ax.get_xticklabels()] == list(sequence[30:50])
    with pytest.raises(ValueError, match=r"grad must have shape \(L, 4\) = \(79, 4\)"):
        _draw(tmp_path / "bad.png", plots.plot_gradient_zoom, grad, sequence[:-1], 30, 50)
    with pytest.raises(ValueError, match="start, end must satisfy"):
        _draw(tmp_path / "bad.png", plots.plot_gradient_zoom, grad, sequence, 70, 90)


@pytest.mark.parametrize("length", [24, 120])
def test_plot_gradient_grid(tmp_path, length):
    rng = np.random.default_rng(2)
    sequences = [_sequence(rng, length) for _ in range(10)]
    grads = rng.normal(size=(10, length, 4))
    titles = [f"seq {k}" for k in range(10)]
    axes = _draw(tmp_path / "grid.png", plots.plot_gradient_grid, grads, sequences, panels=10, titles=titles,
                 title="Gradients")
    assert [ax.get_title(loc="left") for ax in axes] == titles
    _assert_png(tmp_path / "grid.png", min_bytes=20_000)


def test_plot_gradient_grid_rejects_mismatches(tmp_path):
    rng = np.random.default_rng(3)
    sequences = [_sequence(rng, 30) for _ in range(3)]
    grads = rng.normal(size=(3, 30, 4))
    with pytest.raises(ValueError, match=r"K = len\(sequences\) = 2"):
        _draw(tmp_path / "bad.png", plots.plot_gradient_grid, grads, sequences[:2], panels=3)
    with pytest.raises(ValueError, match=r"grads\[1\] must have shape \(L, 4\) = \(29, 4\)"):
        _draw(tmp_path / "bad.png", plots.plot_gradient_grid, grads, [sequences[0], sequences[1][:-1], sequences[2]],
              panels=3)
    with pytest.raises(ValueError, match="titles must have one entry per sequence"):
        _draw(tmp_path / "bad.png", plots.plot_gradient_grid, grads, sequences, panels=3, titles=["a"])
    with pytest.raises(ValueError, match=r"axes must hold one axes per sequence \(3\), got 2"):
        _draw(tmp_path / "bad.png", plots.plot_gradient_grid, grads, sequences, panels=2)


def test_plot_attribution_logo(tmp_path):
    rng = np.random.default_rng(4)
    sequence = _sequence(rng, 50)[:20] + "N" + _sequence(rng, 29)
    attribution = rng.normal(size=(50, 4))
    ax = _draw(tmp_path / "logo.png", plots.plot_attribution_logo, attribution, sequence, start=10, end=40,
               title="Logo")
    assert ax.get_xlim() == (9.5, 39.5) and ax.get_title() == "Logo"
    _draw(tmp_path / "whole.png", plots.plot_attribution_logo, attribution, sequence)
    _assert_png(tmp_path / "logo.png")
    _assert_png(tmp_path / "whole.png")
    with pytest.raises(ValueError, match=r"attribution must have shape \(L, 4\) = \(50, 4\)"):
        _draw(tmp_path / "bad.png", plots.plot_attribution_logo, attribution[:, :3], sequence)
    with pytest.raises(ValueError, match="start, end must satisfy"):
        _draw(tmp_path / "bad.png", plots.plot_attribution_logo, attribution, sequence, start=30, end=30)
