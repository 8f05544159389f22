"""`che tasks` and `che pes` answer from generated listings (che/data/*.json) without importing
torch; the listings must be what the code says (regenerate with `python -m che.listings`)."""

import json
import subprocess
import sys

from conftest import REPO

from che import listings


def test_the_listings_are_current():
    assert listings.builtin_tasks() == json.loads(json.dumps(listings.describe_tasks(builtin_only=True)))
    assert listings.builtin_pes() == json.loads(json.dumps(listings.describe_all_pes(builtin_only=True)))


def test_listing_commands_do_not_import_torch():
    code = ("import sys\nfrom che.cli import main\n"
            "for args in (['tasks'], ['tasks', 'odds_first'], ['pes'], ['--version'], ['--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "CHE_PLUGINS": ""})
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False"
    assert "reverse_string" in result.stdout and "kerple-log-sym" in result.stdout
