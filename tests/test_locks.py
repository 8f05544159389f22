"""che.locks: one OS file lock per run; a live holder is respected, a dead one never holds a run."""

from __future__ import annotations

import json


def test_a_run_in_progress_is_not_started_twice(cli, tmp_path):
    from che.config import make_config
    from che.locks import claim, release

    config = make_config("parity_check", "none", "smoke")
    lock, _ = claim(tmp_path / "runs", config)
    try:
        result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results",
                     tmp_path / "runs", "--quiet")
    finally:
        release(lock)
    assert result.exit_code == 2 and "is running elsewhere (pid" in result.stderr
    assert not list((tmp_path / "runs").rglob("*.json"))


def test_a_lock_outlives_nothing_a_dead_or_reused_pid_never_holds_a_run(tmp_path):
    """The lock is the OS's: a live holder is respected; once it is gone the run is free again,
    whatever PID its old owner file names (PID 1, or our own after a restart)."""
    import subprocess
    import sys

    from che.config import make_config
    from che.locks import claim, is_locked, lock_path, release

    config = make_config("parity_check", "none", "smoke")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom che.config import make_config\nfrom che.locks import claim\n"
        f"lock, _ = claim({str(tmp_path)!r}, make_config('parity_check', 'none', 'smoke'))\n"
        "print('locked', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert "pid " + str(holder.pid) in is_locked(tmp_path, config)
    holder.kill()
    holder.wait()
    lock_path(tmp_path, config).with_suffix(".owner").write_text(json.dumps({"host": "x", "pid": 1}))
    assert is_locked(tmp_path, config) is None
    lock, who = claim(tmp_path, config)
    assert lock is not None and who is None
    release(lock)
