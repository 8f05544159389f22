"""Pictures (che.plots): accuracy against length beside the published numbers, `che show`'s panels,
`che pes --show --plot`, and names drawn as text."""

from __future__ import annotations

import pytest
from conftest import write_results

import che


def test_the_leaderboard_plot_has_published_markers_legend_and_caption(runs_folder, tmp_path, monkeypatch):
    import matplotlib.figure

    from che.plots import accuracy_vs_length

    runs = che.load_results(runs_folder).replace({"pe": {"alibi": "rand-alibi"}})  # a PE of the table
    board = che.leaderboard(runs, reference="dape2024_che_table2")
    texts, legends = [], []
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        texts.extend(t.get_text() for t in figure.texts)
        legends.extend(t.get_text() for legend in figure.legends for t in legend.get_texts())
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    accuracy_vs_length(board, tmp_path / "plot.png")
    assert {"rand-alibi", "none", "training lengths", "chance", "published (dape2024_che_table2)"} <= set(legends)
    assert any("10 steps of batch 8" in t and "3-3 seed(s) per cell" in t for t in texts)


def test_the_plots_draw_names_that_look_like_mathtext(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [{"pe": "$\\undefinedmacro{x}$"}])
    result = cli("leaderboard", "--results", folder, "--plot", tmp_path / "plot.png")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "plot.png").stat().st_size > 1000


@pytest.mark.parametrize("pe, panels", [
    ("dape-kerple", ["bias B", "DAPE's correction f(S, B)", "attention"]),
    ("alibi", ["bias B", "attention"]),
    ("fox", ["FoX's decays D", "attention"]),
    ("fox-alibi", ["FoX's decays D", "bias B", "attention"]),
    ("stick-breaking", ["attention"]),
])
def test_che_show_names_each_panel_and_keeps_its_title_whole(cli, tmp_path, monkeypatch, pe, panels):
    """Each panel says what it shows (FoX's decays are not a bias B, ALiBi's bias is drawn), and the
    title fits the figure however few panels it has."""
    import matplotlib.figure
    import torch

    from che.config import make_config
    from che.runners.inspection import attention_maps
    from che.runners.stored import find_run
    from conftest import run_alone

    path = run_alone(make_config("reverse_string", pe, "smoke"), tmp_path / "runs", device="cpu").path
    drawn = {}
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        renderer = figure.canvas.get_renderer()
        drawn["titles"] = [ax.get_title() for ax in figure.axes if ax.get_title()]
        drawn["heading"] = figure._suptitle.get_window_extent(renderer)
        drawn["width"] = figure.bbox.width
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    result = cli("show", path, "--out", tmp_path / "show.png", "--heads", "0,1")
    assert result.exit_code == 0, result.stderr
    assert drawn["titles"] == panels * 2
    assert 0 <= drawn["heading"].x0 and drawn["heading"].x1 <= drawn["width"]
    if pe == "fox-alibi":  # what the softmax saw: the scores, FoX's decays and ALiBi's bias, apart
        recorded, _ = attention_maps(*find_run(str(path)), torch.device("cpu"), layer=0, length=5, sample=0)
        torch.testing.assert_close(recorded["logits"], recorded["scores"] + recorded["decay"] + recorded["bias"])


def test_che_show_of_a_layer_schedule_draws_the_layers_pe(cli, tmp_path, monkeypatch):
    """A schedule written in the name (`none~alibi+causal`, which che show could not label): layer 1
    draws ALiBi's bias, and the title names the layer's PE."""
    import matplotlib.figure

    from che.config import make_config
    from conftest import run_alone

    path = run_alone(make_config("reverse_string", "none~alibi+causal", "smoke"), tmp_path / "runs", device="cpu").path
    drawn = {}
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        drawn["titles"] = [ax.get_title() for ax in figure.axes if ax.get_title()]
        drawn["heading"] = figure._suptitle.get_text()
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    for layer, panels, named in ((0, ["attention"], "layer 0 (none+causal)"), (1, ["bias B", "attention"],
                                                                          "layer 1 (alibi+causal)")):
        result = cli("show", path, "--out", tmp_path / "show.png", "--heads", "0", "--layer", layer)
        assert result.exit_code == 0, result.stderr
        assert drawn["titles"] == panels and named in drawn["heading"]


def test_pes_show_plots_the_initial_bias(cli, tmp_path):
    out = tmp_path / "bias.svg"
    result = cli("pes", "--show", "kerple-log", "--length", 12, "--n-heads", 4, "--plot", out)
    assert result.exit_code == 0, result.stderr and out.read_text().startswith("<?xml")
    assert cli("pes", "--show", "none", "--plot", out).exit_code == 2
