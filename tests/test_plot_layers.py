"""contdepth.plot's image-state figures: one input through the layers (seed 002 fig. 7), two models
side by side (seed 000 fig. 4.5) and theta(t) per layer (seed 002 fig. 6). Each figure is checked
by what it draws (the panels' images and titles equal the states or parameters they stand for,
the colour scales) and by the PNG it writes; bad input fails early, naming the argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import contdepth.plot as cplot
from contdepth import ControlGrid
from contdepth.fields import ConvCubicFriction, PDEStencil

PNG = b"\x89PNG\r\n\x1a\n"


def _image_axes(sub):
    """The visible panels of a (sub)figure that show an image, in order (colorbars hold no image)."""
    return [ax for ax in sub.axes if ax.images and ax.get_visible()]


def _saved(fig, path) -> None:
    cplot.save(fig, path)
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 1000


def test_layer_picks_are_evenly_spaced_with_both_ends():
    assert cplot.layer_picks(21, 6) == [0, 4, 8, 12, 16, 20]
    assert cplot.layer_picks(16, 6) == [0, 3, 6, 9, 12, 15]
    assert cplot.layer_picks(51, 11) == list(range(0, 51, 5))
    assert cplot.layer_picks(8, 4) == [0, 2, 5, 7]  # round(7 i / 3)
    assert cplot.layer_picks(5, 11) == [0, 1, 2, 3, 4]
    assert cplot.layer_picks(1, 2) == [0]
    for bad in (1, 0, True, 2.0):
        with pytest.raises(ValueError, match="max_panels"):
            cplot.layer_picks(10, bad)
    with pytest.raises(ValueError, match="n_states"):
        cplot.layer_picks(0, 5)


def test_activations_draws_the_chosen_layers_and_the_output_channels(tmp_path):
    torch.manual_seed(0)
    states = torch.randn(21, 10, 8, 8)
    fig = cplot.activations(states, max_panels=6, channel=2, title="a digit")
    top, bottom = (_image_axes(sub) for sub in fig.subfigs)
    picks = [0, 4, 8, 12, 16, 20]
    assert [ax.get_title() for ax in top] == [f"layer {l}" for l in picks]
    for ax, l in zip(top, picks):
        np.testing.assert_array_equal(ax.images[0].get_array(), states[l, 2].numpy())
    peak = float(states[picks, 2].abs().max())  # one symmetric scale for the row (values of both signs)
    assert all(ax.images[0].get_clim() == (-peak, peak) for ax in top)
    assert len(bottom) == 10  # fig. 7a: every channel of the output, titled with its maximum
    for k, ax in enumerate(bottom):
        np.testing.assert_array_equal(ax.images[0].get_array(), states[-1, k].numpy())
        assert ax.get_title() == f"channel {k}\nmax {float(states[-1, k].max()):.3g}"
    _saved(fig, tmp_path / "act.png")


def test_activations_of_one_channel_with_times_and_non_negative_states(tmp_path):
    states = torch.rand(5, 1, 6, 6)
    states[2, 0, 1, 1] = float("nan")  # drawn grey, not an error
    fig = cplot.activations(states, times=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert len(fig.subfigs) == 1  # one channel: no output-channel row
    (top,) = [_image_axes(sub) for sub in fig.subfigs]
    assert [ax.get_title() for ax in top] == ["t = 0", "t = 0.25", "t = 0.5", "t = 0.75", "t = 1"]
    top_value = float(states[torch.isfinite(states)].max())
    assert all(ax.images[0].get_clim() == (0.0, top_value) for ax in top)  # non-negative: from 0
    assert top[0].images[0].get_cmap().name.startswith("viridis")
    _saved(fig, tmp_path / "act1.png")


def test_activations_refuses_bad_input():
    with pytest.raises(ValueError, match=r"states must be a real tensor \(L \+ 1, C, H, W\).*\(3, 8, 8\)"):
        cplot.activations(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="states must be"):
        cplot.activations(np.zeros((3, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"channel must be an int in \[0, 1\)"):
        cplot.activations(torch.rand(3, 1, 8, 8), channel=1)
    with pytest.raises(ValueError, match=r"times must have one value per state \(3\), got 2"):
        cplot.activations(torch.rand(3, 1, 8, 8), times=[0.0, 1.0])
    with pytest.raises(ValueError, match="max_panels"):
        cplot.activations(torch.rand(3, 1, 8, 8), max_panels=1)
    with pytest.raises(ValueError, match="max_channels"):
        cplot.activations(torch.rand(3, 2, 8, 8), max_channels=0)


def test_compare_layer_states_shares_one_scale_per_row(tmp_path):
    torch.manual_seed(1)
    left = {"depth 3": torch.rand(4, 1, 7, 7), "depth 15": torch.rand(16, 1, 7, 7) * 3}
    right = {"depth 3": torch.rand(4, 1, 7, 7) * 2, "depth 15": -torch.rand(16, 1, 7, 7)}
    fig = cplot.compare_layer_states(left, right, names=("PDE1", "PDE2"), max_panels=6)
    halves = [_image_axes(sub) for sub in fig.subfigs]
    assert [sub._suptitle.get_text() for sub in fig.subfigs] == ["PDE1", "PDE2"]
    for half, states in zip(halves, (left, right)):
        assert [ax.get_title() for ax in half] == [f"layer {l}" for l in [0, 1, 2, 3, 0, 3, 6, 9, 12, 15]]
        np.testing.assert_array_equal(half[-1].images[0].get_array(), states["depth 15"][15, 0].numpy())
        assert half[0].get_ylabel() == "depth 3" and half[4].get_ylabel() == "depth 15"
    assert {ax.images[0].get_clim() for ax in halves[0][:4] + halves[1][:4]} == \
        {(0.0, float(torch.cat([left["depth 3"], right["depth 3"]]).max()))}
    picks = [0, 3, 6, 9, 12, 15]
    peak = float(torch.cat([left["depth 15"][picks], right["depth 15"][picks]]).abs().max())
    assert {ax.images[0].get_clim() for ax in halves[0][4:] + halves[1][4:]} == {(-peak, peak)}
    _saved(fig, tmp_path / "fig45.png")


def test_compare_layer_states_refuses_bad_input():
    s = torch.rand(3, 1, 5, 5)
    with pytest.raises(ValueError, match="non-empty dicts"):
        cplot.compare_layer_states({}, {})
    with pytest.raises(ValueError, match=r"same row labels.*\['depth 2'\] and \['depth 3'\]"):
        cplot.compare_layer_states({"depth 2": s}, {"depth 3": s})
    with pytest.raises(ValueError, match="states of 'PDE2', row 'depth 2' must be"):
        cplot.compare_layer_states({"depth 2": s}, {"depth 2": s[0]})
    with pytest.raises(ValueError, match="channel must be an int in"):
        cplot.compare_layer_states({"depth 2": s}, {"depth 2": s}, channel=3)


def test_kernel_mosaic_places_every_kernel_between_gaps():
    w = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3, 3)
    m = cplot.kernel_mosaic(w)
    assert m.shape == (7, 11)
    for o in range(2):
        for i in range(3):
            torch.testing.assert_close(m[4 * o:4 * o + 3, 4 * i:4 * i + 3], w[o, i], rtol=0, atol=0)
    assert torch.isnan(m[3]).all() and torch.isnan(m[:, 3]).all() and torch.isnan(m[:, 7]).all()
    assert torch.isfinite(m).sum() == w.numel()
    with pytest.raises(ValueError, match=r"weight must be a tensor \(C_out, C_in, k, k\)"):
        cplot.kernel_mosaic(w[0])


def test_controls_of_a_one_channel_pde_stencil_are_five_curves(tmp_path):
    torch.manual_seed(2)
    field = PDEStencil(1, ControlGrid(0.0, 4.0, n=4), variant="pde2")
    with torch.no_grad():
        for p in field.parameters():
            p.uniform_(-1, 1)
    fig = cplot.controls(field)
    (ax,) = [ax for sub in fig.subfigs for ax in sub.axes if ax.lines]
    names = ("alpha", "beta", "sigma", "rho", "gamma")
    assert [line.get_label() for line in ax.lines] == list(names)
    for line, name in zip(ax.lines, names):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(4))
        np.testing.assert_array_equal(line.get_ydata(), getattr(field, name).detach().reshape(4).numpy())
    assert ax.get_xlabel() == "layer l"
    _saved(fig, tmp_path / "pde.png")


def test_controls_of_a_conv_field_draw_curves_kernels_and_the_learned_gamma(tmp_path):
    torch.manual_seed(3)
    field = ConvCubicFriction(3, ControlGrid(0.0, 12.0, n=12), gamma=0.25, learn_gamma=True)
    with torch.no_grad():
        field.weight.normal_()
        field.bias.normal_()
    fig = cplot.controls(field, max_layers=4)
    curves = {ax.get_ylabel(): ax for sub in fig.subfigs for ax in sub.axes if ax.get_xlabel() == "layer l"}
    assert set(curves) == {"bias", "weight"}
    assert len(curves["bias"].lines) == 3  # fig. 6a: one line per entry
    np.testing.assert_array_equal(curves["bias"].lines[1].get_ydata(), field.bias[:, 1].detach().numpy())
    segments = curves["weight"].collections[0].get_segments()  # fig. 6b: 81 entries, one collection
    assert len(segments) == 81
    np.testing.assert_array_equal(segments[5], np.stack([np.arange(12), field.weight.detach().reshape(12, 81)[:, 5]], 1))
    kernels = _image_axes(fig.subfigs[-1])
    picks = [0, 4, 7, 11]
    assert [ax.get_title() for ax in kernels] == [f"layer {l}" for l in picks]
    for ax, l in zip(kernels, picks):
        np.testing.assert_array_equal(ax.images[0].get_array().filled(np.nan),
                                      cplot.kernel_mosaic(field.weight[l]).numpy())
    peak = float(field.weight.detach()[picks].abs().max())
    assert kernels[0].images[0].get_clim() == (-peak, peak)
    assert "gamma = 0.25" in fig._suptitle.get_text()
    _saved(fig, tmp_path / "conv.png")


def test_controls_refuses_bad_input():
    with pytest.raises(TypeError, match="field must be a ControlledField, got Linear"):
        cplot.controls(nn.Linear(2, 2))
    field = PDEStencil(1, ControlGrid(0.0, 2.0, n=2))
    with pytest.raises(ValueError, match="max_layers"):
        cplot.controls(field, max_layers=1)
    with pytest.raises(ValueError, match="panels_per_row"):
        cplot.controls(field, panels_per_row=0)
