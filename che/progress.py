"""How runs and sweeps report progress: a rich live display, plain log lines (--quiet), TensorBoard."""

from __future__ import annotations

import collections
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from che.config import RunConfig
from che.runners.estimate import format_duration
from che.runners.reporting import Reporter
from che.runners.sweep import Summary, SweepReporter, label


class RecentRate:
    """Steps per second over the last `window` seconds (at least two readings), so that an ETA
    follows the speed now, not the average since a slow start (estimation, graph capture)."""

    def __init__(self, window: float = 30.0):
        self.window = window
        self.readings: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, step: int) -> float:
        now = time.perf_counter()
        self.readings.append((now, step))
        while len(self.readings) > 2 and now - self.readings[0][0] > self.window:
            self.readings.popleft()
        (t0, s0), (t1, s1) = self.readings[0], self.readings[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0


class FanOut(Reporter):
    def __init__(self, *reporters: Reporter):
        self.reporters = [r for r in reporters if r is not None]

    def start(self, config, resumed_from):
        for r in self.reporters:
            r.start(config, resumed_from)

    def step(self, state, loss, accuracy):
        for r in self.reporters:
            r.step(state, loss, accuracy)

    def evaluation_started(self, lengths):
        for r in self.reporters:
            r.evaluation_started(lengths)

    def length_done(self, length, accuracy):
        for r in self.reporters:
            r.length_done(length, accuracy)

    def close(self):
        for r in self.reporters:
            if hasattr(r, "close"):
                r.close()


class RichReporter(Reporter):
    """A live progress bar: step, loss, in-distribution accuracy (training batches), steps/s, ETA."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=False, redirect_stdout=False,  # stdout is the outcome's, not the display's
        )
        self.train_task = self.eval_task = None
        self.loss = self.accuracy = None

    def start(self, config, resumed_from):
        if resumed_from:
            self.progress.console.print(f"resuming from step {resumed_from} (its checkpoint)", markup=False)
        self.progress.start()
        self.train_task = self.progress.add_task("train", total=config.steps, completed=resumed_from, info="")
        self.rate = RecentRate()

    def step(self, state, loss, accuracy):
        decay = 0.95 if self.loss is not None else 0.0  # smoothed for display only
        self.loss = loss if self.loss is None else decay * self.loss + (1 - decay) * loss
        self.accuracy = accuracy if self.accuracy is None else decay * self.accuracy + (1 - decay) * accuracy
        rate = self.rate.add(state.step)
        self.progress.update(self.train_task, completed=state.step,
                             info=f"loss {self.loss:.4f}  acc {100 * self.accuracy:5.1f}%  {rate:6.2f} steps/s")

    def evaluation_started(self, lengths):
        self.progress.start()  # already started by a run's training; che eval starts here
        self.eval_task = self.progress.add_task("evaluate", total=lengths, info="")

    def length_done(self, length, accuracy):
        self.progress.update(self.eval_task, completed=length, info=f"length {length}: {100 * accuracy:5.1f}%")

    def close(self):
        self.progress.stop()


class LogReporter(Reporter):
    """Plain lines, about 20 per phase."""

    def __init__(self, console: Console):
        self.console = console

    def _print(self, text):
        self.console.print(text, highlight=False, soft_wrap=True)

    def start(self, config, resumed_from):
        self.total, self.every = config.steps, max(1, config.steps // 20)
        self.rate = RecentRate()
        self.rate.add(resumed_from)
        if resumed_from:
            self._print(f"resuming from step {resumed_from} (its checkpoint)")

    def step(self, state, loss, accuracy):
        rate = self.rate.add(state.step)
        if state.step % self.every and state.step != self.total:
            return
        eta = (self.total - state.step) / rate if rate else float("nan")
        self._print(f"step {state.step}/{self.total}  loss {loss:.4f}  acc {100 * accuracy:.1f}%  "
                    f"{rate:.2f} steps/s  eta {eta:.0f}s")

    def evaluation_started(self, lengths):
        self.lengths, self.eval_every = lengths, max(1, lengths // 10)
        self._print(f"evaluating lengths 1..{lengths}")

    def length_done(self, length, accuracy):
        if length % self.eval_every == 0 or length == self.lengths:
            self._print(f"length {length}: accuracy {100 * accuracy:.1f}%")


class TensorBoardReporter(Reporter):
    def __init__(self, log_dir: str):
        from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

        self.writer = SummaryWriter(log_dir)

    @classmethod
    def maybe(cls, log_dir: str) -> TensorBoardReporter | None:
        """A reporter writing to `log_dir` (the `tensorboard` setting), None when it is empty."""
        if not log_dir:
            return None
        try:
            return cls(log_dir)
        except ImportError:
            from che.errors import CheError

            raise CheError("the tensorboard setting needs the tensorboard package: "
                           "pip install 'che-bench[tensorboard]'") from None

    def step(self, state, loss, accuracy):
        self.writer.add_scalar("train/loss", loss, state.step)
        self.writer.add_scalar("train/accuracy", accuracy, state.step)

    def length_done(self, length, accuracy):
        self.writer.add_scalar("eval/accuracy_by_length", accuracy, length)

    def close(self):
        self.writer.close()


def accuracy_chart(accuracies: list[float], train_length: int, buckets: int = 10) -> list[str]:
    """Accuracy against length as text bars, one line per group of lengths."""
    lines, n = [], len(accuracies)
    edges = sorted({0, train_length, n} | {round(i * n / buckets) for i in range(buckets + 1)})
    for lo, hi in zip(edges, edges[1:]):
        if hi <= lo:
            continue
        acc = sum(accuracies[lo:hi]) / (hi - lo)
        bar = "█" * round(20 * acc) + "░" * (20 - round(20 * acc))
        tag = "seen" if hi <= train_length else "unseen"
        lines.append(f"{lo + 1:>5}-{hi:<5} {bar} {100 * acc:5.1f}%  {tag}")
    return lines


# -- sweeps ------------------------------------------------------------------------------------------
def eta(elapsed: float, finished: int, remaining: int) -> float | None:
    """Seconds left at the rate runs have finished so far (None before the first)."""
    if finished <= 0:
        return None
    return elapsed / finished * remaining if remaining else 0.0


def describe_outcome(config: RunConfig, status: str, outcome: dict) -> str:
    """One line about a run that ended."""
    text = f"{status} {label(config)}"
    record = outcome.get("record")
    if status == "finished" and record:
        text += f": unseen lengths {100 * record['ood_accuracy']:.1f}%"
    elif status == "failed":
        text += f": {outcome.get('error_type', 'Error')}: {outcome.get('error', '')}"
    elif status == "interrupted" and outcome.get("step") is not None:
        text += f" at step {outcome['step']} (checkpoint saved)"
    if outcome.get("seconds") is not None:
        text += f" ({outcome['seconds']:.0f} s)"
    return text


class _Counts:
    """What the progress displays share: runs settled this sweep, and the ETA from their rate."""

    def start(self, summary: Summary, pending: int) -> None:
        self.pending, self.skipped_before = pending, summary.skipped
        self.started_at = time.monotonic()

    def settled(self, summary: Summary) -> int:
        return (summary.done + summary.failed + summary.interrupted + summary.elsewhere
                + summary.skipped - self.skipped_before)

    def eta_text(self, summary: Summary) -> str:
        settled = self.settled(summary)
        left = eta(time.monotonic() - self.started_at, settled, self.pending - settled)
        return "eta ?" if left is None else f"eta {format_duration(left)}"


class RichSweepReporter(_Counts, SweepReporter):
    """A live bar: runs settled / to run, running, failed, elapsed and ETA; lines above it for
    failures and notes."""

    def __init__(self, console):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]sweep"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
            console=console, transient=False, redirect_stdout=False,  # stdout is the outcome's, not the display's
        )
        self.bar = None

    def start(self, summary, pending):
        super().start(summary, pending)
        if pending:
            self.progress.start()
            self.bar = self.progress.add_task("sweep", total=pending, info="", eta="eta ?")

    def run_ended(self, config, status, outcome, summary):
        if status in ("failed", "interrupted"):
            self.progress.console.print(describe_outcome(config, status, outcome), highlight=False, markup=False)

    def note(self, text):
        self.progress.console.print(text, highlight=False, markup=False)

    def tick(self, running, summary):
        if self.bar is None:
            return
        info = f"running {running}  done {summary.done}  failed {summary.failed}"
        self.progress.update(self.bar, completed=self.settled(summary), info=info, eta=self.eta_text(summary))

    def close(self):
        self.progress.stop()


class LogSweepReporter(_Counts, SweepReporter):
    """Plain lines, one when a run starts and one when it ends (for logs and --quiet)."""

    def __init__(self, console):
        self.console = console

    def _print(self, text):
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def run_started(self, config):
        self._print(f"started {label(config)}")

    def run_ended(self, config, status, outcome, summary):
        self._print(f"[{self.settled(summary)}/{self.pending}, {self.eta_text(summary)}] "
                    + describe_outcome(config, status, outcome))

    def note(self, text):
        self._print(text)
