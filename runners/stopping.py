"""How che stops: one policy for Ctrl-C (SIGINT) and SIGTERM, wherever a run or a sweep is.

- A training loop (`StopRequested`): the first Ctrl-C asks it to stop at the next step boundary,
  after saving a checkpoint; a second interrupts at once. A process started with SIGINT ignored
  (`che run &` in a script) keeps ignoring it. A signal that acts as Ctrl-C (`as_ctrl_c`) is the
  loop's too, even where SIGINT is ignored.
- Outside a training loop (setting up, evaluating), Ctrl-C interrupts at once (KeyboardInterrupt;
  `Stopped` for a signal that acts as it, naming that signal).
- A `che` command (`sigterm_as_ctrl_c`): SIGTERM acts as Ctrl-C; `che run` saves its checkpoint,
  says where and how to resume, and exits with 128 + the signal's number (130, 143).
- A sweep's dispatcher (`SignalCount`): counts SIGINT and SIGTERM; the first stops dispatching and asks
  the running runs to stop as above, a second abandons them.
- A sweep's worker (`deferred_until_training`, `relay_stop`): a Ctrl-C that arrives before training
  starts is kept and stops the run after its first step (with a checkpoint); one during evaluation
  lets the run finish.
- A SLURM job (`as_ctrl_c`): SIGTERM and SIGUSR2 (its time is nearly up) act as Ctrl-C.
- Child processes that must not see the terminal's Ctrl-C (a local Ray instance's daemons, local
  SLURM jobs) start with SIGINT blocked (`sigint_blocked`); the sweep stops them itself.
"""

from __future__ import annotations

import _thread
import signal
import threading
from contextlib import contextmanager


class Stopped(KeyboardInterrupt):
    """A stop that interrupts at once (a second signal in a training loop, or one outside it), by
    `signum`: caught wherever Ctrl-C's KeyboardInterrupt is."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = signum


# Signals that may be set to act as Ctrl-C (`as_ctrl_c`): SIGTERM (a che command, a SLURM job) and
# SIGUSR2 (a SLURM job whose time is nearly up).
CTRL_C_LIKE = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR2") if hasattr(signal, name))


class StopRequested:
    """Ctrl-C (SIGINT), or a signal that acts as it, asks the loop to stop at the next step boundary
    (`signum`: which); a second one interrupts."""

    def __init__(self):
        self.requested = False
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        # A process started with SIGINT ignored (`che run &` in a script, nohup) keeps ignoring it.
        taken = [signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else []
        taken += [sig for sig in CTRL_C_LIKE if signal.getsignal(sig) is as_ctrl_c]
        for sig in taken:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise Stopped(signum)
        self.requested, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


_stop_pending = False  # a Ctrl-C that reached a worker while no training loop was listening


class SignalCount:
    """Counts SIGINT/SIGTERM while dispatching (in the main thread); the loop acts on the count."""

    def __init__(self):
        self.count = 0
        self.first: int | None = None  # the first signal's number (SIGINT, SIGTERM)
        self._previous = {}

    def _handle(self, signum, frame):
        self.count += 1
        self.first = self.first or signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. `che sweep &` in a script
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


@contextmanager
def deferred_until_training():
    """While a run is set up or evaluated, SIGINT only leaves a note (`_stop_pending`); during
    training, the training loop's own handler takes it (and restores this one afterwards)."""
    global _stop_pending
    _stop_pending = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame):
        global _stop_pending
        _stop_pending = True

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def relay_stop():
    """A Reporter that passes a Ctrl-C noted before training started on to the training loop,
    after its first step, so that it saves a checkpoint and stops."""
    from che.runners.reporting import Reporter

    class StopRelay(Reporter):
        def step(self, state, loss, accuracy):
            global _stop_pending
            if _stop_pending and threading.current_thread() is threading.main_thread():
                _stop_pending = False
                _thread.interrupt_main(signal.SIGINT)  # runs the training loop's SIGINT handler

    return StopRelay()


def as_ctrl_c(signum, frame) -> None:
    """The handler of a signal that acts as Ctrl-C: a training loop takes it over (`StopRequested`);
    elsewhere it does what SIGINT's handler does (a sweep worker's note, `deferred_until_training`),
    or where that is Python's default, or SIGINT is ignored, interrupts (`Stopped`)."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler) or handler is signal.default_int_handler:
        raise Stopped(signum)
    handler(signal.SIGINT, frame)


@contextmanager
def sigterm_as_ctrl_c():
    """While a `che` command runs: SIGTERM acts as Ctrl-C (`as_ctrl_c`), unless it is ignored."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGTERM, as_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(stop: BaseException) -> int:
    """128 + the number of the signal that stopped (130 for Ctrl-C, 143 for SIGTERM), as a shell
    reports a process that a signal ended."""
    signum = getattr(stop, "signum", None) or signal.SIGINT
    return 128 + int(signum)


def signal_name(stop: BaseException) -> str:
    """'SIGTERM' for a stop by SIGTERM, '' for Ctrl-C (the usual case, said as "interrupted")."""
    signum = getattr(stop, "signum", None)
    return "" if signum in (None, signal.SIGINT) else signal.Signals(signum).name


@contextmanager
def sigint_blocked():
    """Block SIGINT in this thread while children are started (they inherit the signal mask).

    A local Ray instance's daemons (gcs_server, raylet, agents) share the sweep's process group, so
    a Ctrl-C in the terminal would kill them, and with them the runs that are saving a checkpoint.
    Blocked, the terminal's SIGINT never reaches them; the sweep stops its runs through Ray
    (`ray.cancel`, which interrupts a task without an OS signal). Signals pending here when the
    mask is restored are delivered then.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
