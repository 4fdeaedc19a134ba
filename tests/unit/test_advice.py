"""The walkthrough's grad-norm advice on plain (step, grad_norm) lists."""

import pytest

from llama_sft_dagster.core.training.advice import grad_norm_advice


@pytest.mark.parametrize(
    "norms, high",
    [
        ([3.0] * 4 + [1.6, 1.7, 1.8, 2.0], True),  # the last quarter (3 points) all above 1.5
        ([3.0] * 7 + [1.2], False),  # the last value came down
        ([0.5] * 8, False),
        ([2.0, 2.0], False),  # too few points to say "stays"
    ],
)
def test_grad_norm_stays_high(norms, high):
    advice = grad_norm_advice(list(enumerate(norms, start=1)))
    assert advice.high is high
    assert ("halve the learning rate" in advice.message) and (f"last {advice.last:.4g}" in advice.message)
    assert advice.message.endswith("halve the learning rate") is high


def test_no_norms_no_advice():
    assert grad_norm_advice([]) is None
