import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from che.threads import configure

configure()  # passive OpenMP waiting and a thread count that fits, as every che entry point
# The user's cache (cost calibrations, rescued results) is not the tests': one of their own, shared
# by the processes they start.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="che-tests-cache-")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def cli():
    """Run the `che` command in-process, as its entry point does (one-line usage errors included):
    cli("sample", "--task", ...) -> a result with exit_code, stdout and stderr. stdout and stderr
    are files, or with `terminal=W` what rich takes for terminals W columns wide (without colours)."""
    from che.cli import main

    def invoke(*args, terminal: int | None = None):
        out, err = io.StringIO(), io.StringIO()
        screen = {"TTY_COMPATIBLE": "1", "COLUMNS": str(terminal)} if terminal else {"TTY_COMPATIBLE": "0"}
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict(os.environ, screen):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return SimpleNamespace(exit_code=code, stdout=out.getvalue(), stderr=err.getvalue(),
                               output=out.getvalue() + err.getvalue())

    return invoke


def as_in_a_terminal():
    """A child process's preexec_fn: Ctrl-C's default handling, as a command typed in a terminal has
    (a test run started in the background, `pytest &`, has SIGINT ignored, which its children inherit
    and che then keeps ignoring by design)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_che(*args, env=None, cwd=None, timeout=300):
    """Run `python -m che ...` in a fresh process (for entry points, env plugins, signals)."""
    full_env = dict(os.environ)
    full_env.pop("CHE_PLUGINS", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "che", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


def run_alone(config, results, **options):
    """One run, as che run makes it (the pack of one): its Outcome."""
    from che.runners.run import execute_pack

    return execute_pack([config], results, **options)[0]


@pytest.fixture(scope="session")
def smoke_result(tmp_path_factory):
    """A real finished result file of a smoke run (parity_check x alibi, seed 0), made once."""
    from che.config import make_config

    folder = tmp_path_factory.mktemp("smoke-result")
    return run_alone(make_config("parity_check", "alibi", "smoke"), folder / "runs", device="cpu").path


PACK_SETTINGS = dict(steps=12, checkpoint_every=4)


def pack(seeds=(0, 1, 2), pe="alibi", **overrides):
    """Smoke configs of parity_check that differ only in seed (12 steps, a checkpoint every 4): runs
    that train together as one pack."""
    from che.config import make_config

    return [make_config("parity_check", pe, "smoke", seed=s, **(PACK_SETTINGS | overrides)) for s in seeds]


@pytest.fixture
def kept_run(tmp_path):
    """A finished smoke run with its kept model, in a folder of its own."""
    outcome = run_alone(pack(seeds=(0,))[0], tmp_path / "runs", device="cpu")
    return outcome.path


@pytest.fixture(scope="session")
def runs_folder(tmp_path_factory):
    """3 seeds x 2 PEs on one task, smoke preset, trained through the API (made once)."""
    import che

    folder = tmp_path_factory.mktemp("published") / "runs"
    for pe in ("alibi", "none"):
        che.run("reverse_string", pe, preset="smoke", seeds=[0, 1, 2], results=folder, device="cpu")
    return folder


def write_results(folder, template, runs):
    """Result files made from a real one (`template`, a path): one per dict of `runs`, each giving
    task, pe, seed and ood (and any other top-level or config field); returns the folder."""
    import json

    from che.config import implementation_versions
    from che.errors import CheError

    valid = json.loads(Path(template).read_text())
    for i, run in enumerate(runs):
        run = dict(run)
        task, pe, seed = run.pop("task", valid["task"]), run.pop("pe", valid["pe"]), run.pop("seed", i)
        ood = run.pop("ood", valid["ood_accuracy"])
        config = dict(valid["config"], task=task, pe=pe, seed=seed, **run.pop("config", {}))
        record = dict(valid, task=task, pe=pe, seed=seed, ood_accuracy=ood, config=config,
                      run_id=f"seed{seed}-lr0.001-{i:010d}", **run)
        if "implementations" not in run:  # this code's versions of the task and PE, as a run would record
            try:
                record["implementations"] = implementation_versions(task, pe)
            except CheError:  # a name no registry holds (a plugin's, not loaded): kept as the template's
                pass
        path = Path(folder) / task / pe / f"{record['run_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    return Path(folder)


def assert_same_function(plain, other, inputs, output_length: int, atol: float, grad_atol: float) -> None:
    """Two models with the same weights compute the same outputs on `inputs` and give every parameter
    the same gradient (of the squared outputs' sum), within the tolerances."""
    import torch

    a, b = plain(inputs, output_length), other(inputs, output_length)
    torch.testing.assert_close(b, a, atol=atol, rtol=atol)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), other.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=grad_atol, rtol=grad_atol, msg=name)
