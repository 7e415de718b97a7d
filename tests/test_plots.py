import numpy as np
import pytest

from tfbind_dist.interpret import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    plots.plot_ism(delta, importance, sequence, tmp_path / "full.png", title="ISM")
    plots.plot_ism(delta, importance, sequence, tmp_path / "marked.png", title="ISM", highlight=(20, 35))
    plots.plot_ism(delta, importance, sequence, tmp_path / "zoom.png", highlight=(20, 35), window=(15, 40))
    for name in ("full", "marked", "zoom"):
        _assert_png(tmp_path / f"{name}.png")
    assert (tmp_path / "marked.png").read_bytes() != (tmp_path / "full.png").read_bytes()


def test_plot_ism_accepts_all_zero_deltas(tmp_path):
    plots.plot_ism(np.zeros((30, 4)), np.zeros(30), "A" * 30, tmp_path / "zero.png")
    _assert_png(tmp_path / "zero.png")


def test_plot_ism_rejects_bad_shapes_and_spans(tmp_path):
    delta, importance, sequence = _ism_inputs()
    with pytest.raises(ValueError, match=r"delta must have shape \(L, 4\) = \(60, 4\).*got \(59, 4\)"):
        plots.plot_ism(delta[:-1], importance, sequence, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"delta must have shape \(L, 4\)"):
        plots.plot_ism(delta.T, importance, sequence, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"importance must have shape \(L,\) = \(60,\)"):
        plots.plot_ism(delta, importance[:10], sequence, tmp_path / "x.png")
    with pytest.raises(ValueError, match="window must satisfy"):
        plots.plot_ism(delta, importance, sequence, tmp_path / "x.png", window=(40, 20))
    with pytest.raises(ValueError, match="highlight must satisfy"):
        plots.plot_ism(delta, importance, sequence, tmp_path / "x.png", highlight=(50, 70))
    assert not (tmp_path / "x.png").exists()


def test_plot_gradient_zoom(tmp_path):
    rng = np.random.default_rng(1)
    sequence = _sequence(rng, 80)
    grad = rng.normal(size=(80, 4))
    plots.plot_gradient_zoom(grad, sequence, 30, 50, tmp_path / "zoom.png", title="Gradient zoom")
    _assert_png(tmp_path / "zoom.png")
    with pytest.raises(ValueError, match=r"grad must have shape \(L, 4\) = \(79, 4\)"):
        plots.plot_gradient_zoom(grad, sequence[:-1], 30, 50, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="start, end must satisfy"):
        plots.plot_gradient_zoom(grad, sequence, 70, 90, tmp_path / "bad.png")


@pytest.mark.parametrize("length", [24, 120])
def test_plot_gradient_grid(tmp_path, length):
    rng = np.random.default_rng(2)
    sequences = [_sequence(rng, length) for _ in range(10)]
    grads = rng.normal(size=(10, length, 4))
    titles = [f"seq {k}" for k in range(10)]
    plots.plot_gradient_grid(grads, sequences, tmp_path / "grid.png", titles=titles, title="Gradients")
    _assert_png(tmp_path / "grid.png", min_bytes=20_000)


def test_plot_gradient_grid_rejects_mismatches(tmp_path):
    rng = np.random.default_rng(3)
    sequences = [_sequence(rng, 30) for _ in range(3)]
    grads = rng.normal(size=(3, 30, 4))
    with pytest.raises(ValueError, match=r"K = len\(sequences\) = 2"):
        plots.plot_gradient_grid(grads, sequences[:2], tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"grads\[1\] must have shape \(L, 4\) = \(29, 4\)"):
        plots.plot_gradient_grid(grads, [sequences[0], sequences[1][:-1], sequences[2]], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="titles must have one entry per sequence"):
        plots.plot_gradient_grid(grads, sequences, tmp_path / "bad.png", titles=["a"])


def test_plot_attribution_logo(tmp_path):
    rng = np.random.default_rng(4)
    sequence = _sequence(rng, 50)[:20] + "N" + _sequence(rng, 29)
    attribution = rng.normal(size=(50, 4))
    plots.plot_attribution_logo(attribution, sequence, tmp_path / "logo.png", start=10, end=40, title="Logo")
    plots.plot_attribution_logo(attribution, sequence, tmp_path / "whole.png")
    _assert_png(tmp_path / "logo.png")
    _assert_png(tmp_path / "whole.png")
    with pytest.raises(ValueError, match=r"attribution must have shape \(L, 4\) = \(50, 4\)"):
        plots.plot_attribution_logo(attribution[:, :3], sequence, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="start, end must satisfy"):
        plots.plot_attribution_logo(attribution, sequence, tmp_path / "bad.png", start=30, end=30)
