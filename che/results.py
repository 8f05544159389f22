"""Result files: one JSON per run, written atomically, read back defensively.

Layout under a results folder (default `results/runs`):

    <task>/<pe>/<run-id>.json          a finished run (status "finished")
    <task>/<pe>/<run-id>.failed.json   the error of a run that failed (a later attempt retries it)
    <task>/<pe>/<run-id>.ckpt          the checkpoint of an unfinished run (removed when it finishes)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import platform
import stat
import subprocess
import shlex
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from che.errors import CheError
from che.registry import CheWarning

_UMASK = os.umask(0o022)
os.umask(_UMASK)
DEFAULT_RESULTS = Path("results/runs")


def run_dir(results: Path, task: str, pe: str) -> Path:
    """`<results>/<task>/<pe>`, refused when a name would lead anywhere else: registered names cannot
    (`che.registry.NAME_FORM`), but a result file's names are the file's."""
    for name in (task, pe):
        if not isinstance(name, str) or name in ("", ".", "..") or any(sep in name for sep in ("/", "\\", os.sep, "\0")):
            raise CheError(f"the name {name!r:.80} would put files outside the results folder")
    return Path(results) / task / pe


def result_path(results: Path, config) -> Path:
    return run_dir(results, config.task, config.pe) / f"{config.run_id}.json"


def failure_path(results: Path, config) -> Path:
    return run_dir(results, config.task, config.pe) / f"{config.run_id}.failed.json"


def checkpoint_path(results: Path, config) -> Path:
    return run_dir(results, config.task, config.pe) / f"{config.run_id}.ckpt"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as any file the user creates (mkstemp makes it 0600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def disk_problem(path: Path, exc: BaseException | None) -> str:
    """Why a file could not be written, in words: 'the disk is full' when it is."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        full = shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        full = False
    said = str(exc or "")
    if full or getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in said or "StorageFull" in said:
        return f"the disk is full ({folder})"
    if exc is None:
        return "the folder cannot be written"
    return getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"


def check_output(what: str, path: Path | None, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse, before any work, an output path that is a folder, has an unknown format or cannot be
    written (its folder is made if missing)."""
    if path is None:
        return
    path = Path(path)
    if suffixes is not None and path.suffix.lower().lstrip(".") not in suffixes:
        raise CheError(f"{what} '{path}': unknown format '{path.suffix or '(none)'}' "
                       f"(choices: {', '.join('.' + s for s in suffixes)})")
    if path.is_dir():
        raise CheError(f"{what} '{path}' is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise CheError(f"{what} '{path}' cannot be written: {exc.strerror or exc}") from None


def is_finished(path: Path) -> bool:
    """A readable result file with status 'finished'."""
    try:
        return json.loads(Path(path).read_text()).get("status") == "finished"
    except (OSError, ValueError, AttributeError):
        return False


MAX_RESULT_BYTES = 64 * 2**20  # a result file is ~20 kB; anything far larger is not one


def read_json_file(path: Path) -> dict:
    """A JSON object from a regular file of sane size: FIFOs, devices (also behind a symlink) and
    huge files are refused with ValueError instead of hanging or filling the memory."""
    info = os.stat(path)  # follows symlinks
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size > MAX_RESULT_BYTES:
        raise ValueError(f"{info.st_size:,} bytes, more than a result file can be")
    record = json.loads(Path(path).read_text())
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def load_results(results: Path | list[Path]) -> list[dict]:
    """Every finished, valid result under a folder (or several), each run once. Files that are not
    results, or whose values are not what a result holds (`che.result.Result`: types,
    ranges, finite numbers), are skipped with a warning; a run id seen twice (a copied file) counts
    once."""
    from che.result import invalid_reason

    folders = [Path(r) for r in results] if isinstance(results, (list, tuple)) else [Path(results)]
    for folder in folders:
        if folder.is_file():
            raise CheError(f"'{folder}' is a file; --results takes the folder of results it sits in "
                           f"(e.g. {folder.parent})")
        if not folder.is_dir():
            raise CheError(f"results folder '{folder}' does not exist (run `che run` or `che sweep` first, "
                           f"or pass --results)")
    records, seen = [], {}
    for path in [path for folder in folders for path in json_files(folder)]:
        if path.name.endswith((".failed.json", ".ckpt.json")) or path.name.startswith("."):  # not results
            continue
        try:
            record = read_json_file(path)
            reason = invalid_reason(record)
            if reason:
                raise ValueError(reason)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            warnings.warn(f"skipping result file {path}: {exc}", CheWarning, stacklevel=2)
            continue
        if record["run_id"] in seen:
            warnings.warn(f"skipping result file {path}: run {record['run_id']} already read from "
                          f"{seen[record['run_id']]}", CheWarning, stacklevel=2)
            continue
        seen[record["run_id"]] = path
        record["_path"] = str(path)
        records.append(record)
    if not records:
        raise CheError(f"no finished results in {', '.join(repr(str(f)) for f in folders)}")
    return records


def json_files(folder: Path, pattern: str = "*.json") -> list[Path]:
    """The files matching `pattern` under a folder, sorted, following symlinked subfolders (a results
    folder assembled from links to others) once each, so that a link cycle ends."""
    found, visited = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .locks, .slurm
        found += [Path(root) / name for name in files if Path(name).match(pattern)]
    return sorted(found)


def settings_as_now(config: dict) -> dict:
    """A result's settings in today's terms, so that results made before a setting existed compare
    with those made after: the legacy translation (`che.config.legacy_settings`), and each later
    setting at the value that earlier runs had in effect (its `absent`)."""
    from che.config import SETTINGS, legacy_settings

    row = legacy_settings(config)
    for name, spec in SETTINGS.items():
        if "absent" in spec.metadata:
            row.setdefault(name, spec.metadata["absent"])
    return row


SCORES = ("ood_accuracy", "in_distribution_accuracy", "chance_accuracy")


def outdated(record: dict) -> bool:
    """Whether a result was made by an earlier implementation of its task or PE than this code's (a
    changed causal form, say): its recorded versions differ from today's. False where that cannot
    be told: results from before versions were recorded, a plugin's task or PE that is not loaded."""
    from che.config import implementation_versions

    recorded = record.get("implementations")
    if not recorded:
        return False
    try:
        return recorded != implementation_versions(record["task"], record["pe"])
    except CheError:
        return False


def results_frame(records: list[dict]):
    """A pandas DataFrame with one row per run: its scores, task, level, PE, run id, path, accuracy
    by length (a list), whether an earlier implementation made it (`outdated`), and every setting of
    its configuration as a column. Scores are fractions in [0, 1], as result files store them; each
    also as `<score>_percent`, the unit che's commands print."""
    import pandas as pd

    rows = []
    for record in records:
        row = settings_as_now(record["config"])
        row.update({key: record.get(key) for key in (
            "run_id", "task", "pe", "level", "seed", "ood_accuracy", "ood_accuracy_reference_script",
            "in_distribution_accuracy", "chance_accuracy", "accuracy_by_length", "final_loss")})
        row["level"] = row["level"] or "other"
        row.update({f"{score}_percent": 100 * record[score] for score in SCORES})
        row["path"] = record.get("_path")
        row["outdated"] = outdated(record)
        rows.append(row)
    return pd.DataFrame(rows)


def select_runs(runs, pes: list[str] | None = None, seeds: list[int] | None = None):
    """The rows of `runs` (`results_frame`) of these PEs (names as the results hold them) and seeds;
    a one-line CheError for a PE, or a set of seeds, that has no runs."""
    if pes is not None:
        missing = [pe for pe in pes if pe not in set(runs.pe)]
        if missing:
            raise CheError(f"no runs of {', '.join(map(repr, missing))} in these results; they hold "
                           f"{', '.join(sorted(set(runs.pe)))}")
        runs = runs[runs.pe.isin(pes)]
    if seeds is not None:
        runs = runs[runs.seed.isin(seeds)]
        if runs.empty:
            raise CheError(f"no runs of seeds {', '.join(map(str, seeds))} in these results")
    return runs


# -- provenance -----------------------------------------------------------------------------------
def git_revision() -> dict:
    """The git revision of the che source tree, if it is a checkout (an editable install).

    A tree copied without its .git, or with a stale one (a cluster node, a GPU box, a container),
    names its revision in CHE_GIT_REVISION: that is recorded, marked `"from": "CHE_GIT_REVISION"`,
    beside what git says there (`detected`, or None).
    """
    source = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        detected = {"revision": rev, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        detected = {"revision": None, "dirty": None}
    named = os.environ.get("CHE_GIT_REVISION", "").strip()
    if named:
        return {"revision": named, "dirty": None, "from": "CHE_GIT_REVISION", "detected": detected}
    return detected


def versions() -> dict:
    import numpy
    import torch

    from che.version import __version__

    return {"che": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "platform": platform.platform()}


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


_command: str | None = None  # the che command this process serves (`set_command`)


def set_command(args: list[str]) -> None:
    """Record the command line this process serves (the CLI calls it), stored with each result."""
    global _command
    _command = shlex.join(args)


def command_line() -> str:
    """The che command this process serves, else its own command line."""
    return _command or " ".join(sys.argv)
