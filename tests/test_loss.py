import numpy as np
import pytest

from npsiamese.gradcheck import check_loss
from npsiamese.loss import BCEWithLogits


def naive_bce(s, y):
    p = 1 / (1 + np.exp(-s))
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_matches_textbook_formula_for_moderate_logits():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(20) * 4
    y = (rng.random(20) < 0.5).astype(np.float64)
    assert BCEWithLogits().forward(s, y) == pytest.approx(naive_bce(s, y), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite_and_exact(dtype):
    s = np.array([1000.0, -1000.0, 1000.0, -1000.0], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype)
    loss = BCEWithLogits()
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value = loss.forward(s, y)
        ds = loss.backward()
    # two confident right answers cost 0, two confident wrong ones cost 1000 each
    assert value == pytest.approx(500.0, rel=1e-6)
    np.testing.assert_allclose(ds, np.array([0, 0, 1, -1]) / 4, atol=1e-7)


def test_weighted_loss_is_weighted_mean():
    s = np.array([0.3, -1.2, 2.0])
    y = np.array([1.0, 0.0, 0.0])
    w = np.array([1.0, 2.0, 0.0])
    per = np.array([BCEWithLogits().forward(s[i:i + 1], y[i:i + 1]) for i in range(3)])
    assert BCEWithLogits().forward(s, y, w) == pytest.approx((per * w).sum() / w.sum())


def test_loss_gradient_check_passes():
    results = check_loss()
    assert len(results) == 2 and all(r.passed for r in results), results


def test_bad_labels_and_shapes():
    loss = BCEWithLogits()
    with pytest.raises(ValueError, match="only 0"):
        loss.forward(np.zeros(2), np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="shape"):
        loss.forward(np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="BCEWithLogits.forward"):
        loss.forward(np.zeros(2), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        loss.forward(np.zeros(2), np.zeros(2), np.array([-1.0, 1.0]))
