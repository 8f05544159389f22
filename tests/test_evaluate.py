"""Range evaluation: memory chunking never changes a result; dropout and randomization at evaluation;
an evaluation that cannot fit in memory is refused before training."""

import pytest
import torch
from che.models import Transformer
from che.runners.evaluate import chunk_size, evaluate, summarize

from che.config import make_config
from che.registry import TASKS


def evaluate_with(pe, task_name, memory_gb, **overrides):
    config = make_config(task_name, pe, "smoke", eval_samples=12, eval_batch_size=6, max_test_length=9,
                         eval_memory_gb=memory_gb, **overrides)
    task = TASKS.get(task_name)
    torch.manual_seed(0)
    model = Transformer(config.model_for(task))
    return evaluate(model, task, config, torch.device("cpu"))[0]


@pytest.mark.parametrize("pe", ["dape-kerple-log", "rand-alibi", "rand-rope", "dape-rand-fire", "relative"])
def test_chunked_evaluation_equals_unchunked(pe):
    tiny = 1e-9  # forces one example per chunk
    mc = make_config("duplicate_string", pe, "smoke").model_for(TASKS.get("duplicate_string"))
    assert chunk_size(mc, 27, 6, tiny) == 1 and chunk_size(mc, 27, 6, 100.0) == 6
    whole = evaluate_with(pe, "duplicate_string", memory_gb=100.0)
    one_by_one = evaluate_with(pe, "duplicate_string", memory_gb=tiny)
    assert whole == one_by_one


def test_chunk_size_respects_the_budget():
    config = make_config("duplicate_string", "dape-kerple-log", "paper")
    mc = config.model_for(TASKS.get("duplicate_string"))
    assert chunk_size(mc, 1500, 64, 4.0) < 64
    assert chunk_size(mc, 20, 64, 4.0) == 64
    assert chunk_size(mc, 1500, 64, 1e-9) == 1


def test_evaluation_is_deterministic_and_uses_the_same_data_for_every_run():
    a = evaluate_with("alibi", "reverse_string", 4.0)
    b = evaluate_with("alibi", "reverse_string", 4.0)
    assert a == b and len(a) == 9


def test_eval_dropout_is_an_option():
    off = evaluate_with("sin-cos", "reverse_string", 4.0, dropout=0.5)
    on = evaluate_with("sin-cos", "reverse_string", 4.0, dropout=0.5, eval_dropout=True)
    assert off != on  # dropout was active
    assert off == evaluate_with("sin-cos", "reverse_string", 4.0, dropout=0.5)


def test_no_rand_at_eval_uses_consecutive_positions():
    """With rand_at_eval off, a rand- PE evaluates exactly like its plain PE (same weights)."""
    config = make_config("reverse_string", "rand-alibi", "smoke", rand_at_eval=False, max_test_length=9,
                         eval_samples=8, eval_batch_size=8)
    plain = make_config("reverse_string", "alibi", "smoke", max_test_length=9, eval_samples=8, eval_batch_size=8)
    task = TASKS.get("reverse_string")
    torch.manual_seed(0)
    randomized = Transformer(config.model_for(task))
    torch.manual_seed(0)
    consecutive = Transformer(plain.model_for(task))
    assert evaluate(randomized, task, config, torch.device("cpu")) == \
        evaluate(consecutive, task, plain, torch.device("cpu"))


def test_summary_scores_follow_the_protocol():
    accuracies = [1.0] * 5 + [0.5, 0.25, 0.75]
    s = summarize(accuracies, train_length=5)
    assert s["in_distribution_accuracy"] == 1.0
    assert s["ood_accuracy"] == pytest.approx(0.5)            # lengths 6..8
    assert s["ood_accuracy_reference_script"] == pytest.approx(0.5)  # lengths 7..8: (0.25+0.75)/2


def test_an_evaluation_that_cannot_fit_is_refused_naming_evaluation(cli, tmp_path):
    result = cli("run", "--task", "duplicate_string", "--pe", "alibi", "--preset", "smoke", "--set",
                 "max_test_length=10000", "--results", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: evaluating duplicate_string at max_test_length 10000 needs up to")
    assert "lower max_test_length" in result.stderr and "training step" not in result.stderr
