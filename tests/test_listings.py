"""`che tasks` and `che pes` answer from generated listings (che/data/*.json) without importing
torch; the listings must be what the code says (regenerate with `python -m che.listings`), down to
the parameters a model of each PE trains."""

import json
import subprocess
import sys

import pytest
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


@pytest.mark.parametrize("pe", ["dape-fire", "dape-alibi", "dape2-kerple-log", "fire", "learned", "t5",
                                "rand-relative", "alibi"])
def test_che_pes_counts_the_parameters_a_model_trains_for_the_pe(cli, pe):
    from che.models import Transformer

    from che.config import ModelConfig

    def parameters(name):
        return Transformer(ModelConfig(input_size=2, output_size=2, pe=name)).num_parameters()

    line = " ".join(cli("pes", pe).stdout.split())
    listed = int(line.split("a model trains ")[1].split(" ")[0].replace(",", ""))
    assert listed == parameters(pe) - parameters("none")
    assert "5 layers, d_model 64, 8 heads" in line


@pytest.mark.parametrize("name, cited", [("fox", "Lin et al. 2025"), ("stick-breaking", "Tan et al. 2025"),
                                         ("ssmax-alibi", "Nakanishi 2025"), ("p-rope", "Barbero et al. 2025"),
                                         ("bipe-alibi", "He et al. 2024"), ("none+causal", "causal")])
def test_che_pes_describes_each(name, cited, cli):
    result = cli("pes", name)
    assert result.exit_code == 0, result.stderr
    assert cited in " ".join(result.stdout.split())
