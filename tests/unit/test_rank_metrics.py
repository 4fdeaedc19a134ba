"""Rank measures on matrices whose spectra are known by construction."""

import math

import numpy as np
import pytest

from llama_sft_dagster.core.training.rank_metrics import (
    entropy_effective_rank,
    lora_delta,
    lora_singular_values,
    nuclear_frobenius_ratio,
    rank_measures,
    singular_values,
    stable_rank,
)


def _matrix_with_spectrum(spectrum, shape=(48, 40), seed=0):
    """U diag(spectrum) V^T with random orthonormal U, V: the singular values are `spectrum`."""
    rng = np.random.default_rng(seed)
    k = len(spectrum)
    u, _ = np.linalg.qr(rng.standard_normal((shape[0], k)))
    v, _ = np.linalg.qr(rng.standard_normal((shape[1], k)))
    return u @ np.diag(spectrum) @ v.T


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 250.0])
def test_orthogonal_rank_k_has_rank_k(k, scale):
    s = singular_values(_matrix_with_spectrum([scale] * k))
    assert entropy_effective_rank(s) == pytest.approx(k, rel=1e-6)
    assert stable_rank(s) == pytest.approx(k, rel=1e-6)
    assert nuclear_frobenius_ratio(s) == pytest.approx(math.sqrt(k), rel=1e-6)


def test_ratio_ceiling_is_sqrt_r_not_r():
    # the seed read "5-8 of 64" as collapse; with r=64 the ratio cannot exceed 8
    s = singular_values(_matrix_with_spectrum([1.0] * 64, shape=(96, 80)))
    assert nuclear_frobenius_ratio(s) == pytest.approx(8.0, rel=1e-6)
    assert entropy_effective_rank(s) == pytest.approx(64.0, rel=1e-6)


def test_skewed_spectrum_orders_the_measures():
    # s = (10, 1, 1, 1): one dominant direction; stable rank sees it most strongly
    s = singular_values(_matrix_with_spectrum([10.0, 1.0, 1.0, 1.0]))
    assert stable_rank(s) == pytest.approx(103 / 100, rel=1e-6)
    p = np.array([10, 1, 1, 1]) / 13
    assert entropy_effective_rank(s) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    assert nuclear_frobenius_ratio(s) == pytest.approx(13 / math.sqrt(103), rel=1e-6)
    assert 1 < stable_rank(s) < entropy_effective_rank(s) < 4


@pytest.mark.parametrize("shape", [(5, 5), (64, 8), (0, 3)])
def test_zero_matrix_is_rank_zero_not_nan(shape):
    s = singular_values(np.zeros(shape))
    measures = rank_measures(s)
    assert measures == {
        "nuclear_frobenius_ratio": 0.0,
        "entropy_effective_rank": 0.0,
        "stable_rank": 0.0,
        "frobenius_norm": 0.0,
    }


def test_non_finite_spectrum_is_nan():
    assert math.isnan(stable_rank([1.0, float("nan")]))
    assert math.isnan(entropy_effective_rank([float("inf"), 1.0]))


def test_lora_delta_scaling_and_shape_check():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 10)), rng.standard_normal((12, 4))
    np.testing.assert_allclose(lora_delta(a, b, alpha=8, r=4), 2.0 * b @ a)
    with pytest.raises(ValueError, match="A \\(r, in\\) and B \\(out, r\\)"):
        lora_delta(a, b.T, alpha=8, r=4)


@pytest.mark.parametrize("r", [1, 4, 8])
def test_lora_singular_values_match_full_svd(r):
    import torch

    g = torch.Generator().manual_seed(r)
    a, b = torch.randn(r, 40, generator=g), torch.randn(56, r, generator=g)
    fast = lora_singular_values(a, b, scale=16 / r)
    full = singular_values(lora_delta(a.numpy(), b.numpy(), alpha=16, r=r))[:r]
    np.testing.assert_allclose(fast, full, rtol=1e-4)


def test_lora_singular_values_of_initial_adapter_are_zero():
    import torch

    a, b = torch.randn(8, 32), torch.zeros(64, 8)
    s = lora_singular_values(a, b, scale=2.0)
    assert rank_measures(s)["entropy_effective_rank"] == 0.0
