"""Pictures: accuracy against test length for a leaderboard, and what a PE learned (bias, DAPE's
correction, attention) for one input of a run."""

from __future__ import annotations

import functools
import math
from pathlib import Path

FORMATS = ("png", "pdf", "svg")  # what a picture may be written as
LINE_STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain_text(draw):
    """Draw with mathtext off: task and PE names are the user's ('$\\undefinedmacro{x}$' is a
    name, not a formula to parse, which would fail)."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper


def protocol_caption(runs) -> str:
    """One line with the protocol of a table of runs (steps, batch, train/test lengths, seeds)."""
    def values(column):
        return "/".join(str(v) for v in sorted(set(runs[column]))) if column in runs else "?"

    seeds = runs.groupby(["task", "pe"])["seed"].nunique()
    return (f"{values('steps')} steps of batch {values('batch_size')}; trained on lengths 1..{values('train_length')}, "
            f"tested on 1..{values('max_test_length')} x {values('eval_samples')}; d_model {values('d_model')}; "
            f"{seeds.min()}-{seeds.max()} seed(s) per cell")


@plain_text
def accuracy_vs_length(board, path: Path) -> None:
    """One panel per task, one curve per PE (the best run for max, the mean over runs for mean), each
    PE with its own color, line style and marker so that overlapping curves stay apart; the training
    range shaded and chance dotted (both in the legend); with a reference table, the published
    number of each PE as a marker over the unseen lengths; and a caption line with the protocol."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    tasks = board.tasks
    columns = min(4, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.1 * rows), squeeze=False)
    pes = [pe for pe in board.pes if any(board.cell(t, pe) is not None for t in tasks)]
    palette = plt.get_cmap("tab10" if len(pes) <= 10 else "tab20")
    style = {pe: dict(color=palette(i % palette.N), ls=LINE_STYLES[i % len(LINE_STYLES)],
                      marker=MARKERS[i % len(MARKERS)]) for i, pe in enumerate(pes)}
    published = False
    for ax, task in zip(axes.flat, tasks):
        train_length = max_length = None
        for pe in pes:
            if board.cell(task, pe) is None:
                continue
            curve = board.curve(task, pe)
            runs = board.runs[(board.runs.task == task) & (board.runs.pe == pe)]
            train_length, max_length = int(runs.train_length.iloc[0]), len(curve)
            ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], lw=1.2, markevery=max(1, len(curve) // 8),
                    markersize=3.5, **style[pe])
        if train_length:
            ax.axvspan(1, train_length, color="0.9", zorder=0)
            for pe in pes:
                ref = board.reference.get((task, pe))
                if ref is not None:  # the published score is an average over the unseen lengths
                    ax.plot([(train_length + max_length) / 2], [ref], marker=style[pe]["marker"], ms=8, mfc="none",
                            mec=style[pe]["color"], mew=1.6, ls="none")
                    published = True
        ax.axhline(board.chance.get(task, math.nan), color="0.4", ls=":", lw=1)
        ax.set_title(task, fontsize=10)
        ax.set_ylim(0, 102)
        ax.set_xlabel("test length", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = [Line2D([], [], lw=1.2, markersize=4, **style[pe]) for pe in pes]
    labels = list(pes)
    handles += [Patch(color="0.9"), Line2D([], [], color="0.4", ls=":", lw=1)]
    labels += ["training lengths", "chance"]
    if published:
        handles.append(Line2D([], [], marker="o", ls="none", mfc="none", mec="0.2", ms=8, mew=1.6))
        labels.append(f"published ({board.reference_name})")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.035))
    fig.text(0.5, 0.008, protocol_caption(board.runs) + f"; cell = {board.aggregation} over runs", ha="center",
             fontsize=7.5, color="0.25")
    legend_rows = math.ceil(len(labels) / 6)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * legend_rows, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# What `che show` draws of a layer's record, in this order, each where the PE has it.
PANELS = (("decay", "FoX's decays D"), ("bias", "bias B"), ("f", "DAPE's correction f(S, B)"), ("probs", "attention"))


@plain_text
def heatmaps(panels: list[tuple[str, list]], path: Path, title: str, cmap: str = "viridis") -> None:
    """A grid of heatmaps: one row per (row label, [(column label, [T, T] array), ...]), under
    `title`; the figure widens until the title fits."""
    plt = _pyplot()
    columns = max(len(cols) for _, cols in panels)
    # constrained layout keeps the title clear of the panels' headings (tight_layout ignores it)
    fig, axes = plt.subplots(len(panels), columns, figsize=(2.6 * columns + 0.6, 2.3 * len(panels) + 0.9),
                             squeeze=False, layout="constrained")
    for r, (row_label, cols) in enumerate(panels):
        for c in range(columns):
            ax = axes[r, c]
            if c >= len(cols):
                ax.axis("off")
                continue
            label, values = cols[c]
            image = ax.imshow(values, cmap=cmap, interpolation="nearest", aspect="auto")
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
            ax.set_title(label, fontsize=8)
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_ylabel(f"{row_label}\nquery i", fontsize=8)
            if r == len(panels) - 1:
                ax.set_xlabel("key j", fontsize=8)
    heading = fig.suptitle(title, fontsize=10)
    needed = heading.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.4  # inches, with margins
    if needed > fig.get_figwidth():
        fig.set_figwidth(needed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def attention_pictures(recorded: dict, about: dict, out: Path, heads: list[int] | None = None) -> None:
    """Heatmaps per head of what `che.runners.inspection.attention_maps` recorded, each panel named
    by what it shows (`PANELS`): FoX's decays D, the PE's bias B, DAPE's correction f(S, B) and the
    attention, as the DAPE paper's figures (the attention alone for a PE that adds nothing)."""
    from che.errors import CheError

    n_heads = recorded["probs"].shape[0]
    heads = list(range(min(n_heads, 8))) if heads is None else heads
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise CheError(f"--heads: the model has heads 0..{n_heads - 1}, not {', '.join(map(str, bad))}")
    labels = dict(PANELS) | {"bias": about.get("bias_label", "bias B")}  # as the PE names it
    panels = [(f"head {h}", [(labels[key], recorded[key][h].numpy()) for key, _ in PANELS if key in recorded])
              for h in heads]
    layer_pe = f" ({about['layer_pe']})" if about.get("layer_pe") else ""  # a layer schedule's PE there
    title = (f"{about['task']} x {about['pe']}: layer {about['layer']}{layer_pe}, length {about['length']} "
             f"({about['tokens']} tokens), test sample {about['sample']}")
    heatmaps(panels, out, title)
