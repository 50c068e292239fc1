import numpy as np
import pytest

from npsiamese.distance import L1Distance
from npsiamese.gradcheck import check_layer


def test_l1_forward_and_backward_signs():
    h1 = np.array([[1.0, -2.0, 3.0]], np.float32)
    h2 = np.array([[0.5, 1.0, 3.0]], np.float32)
    layer = L1Distance()
    np.testing.assert_allclose(layer.forward(h1, h2), [[0.5, 3.0, 0.0]])
    dh1, dh2 = layer.backward(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(dh1, [[1, -1, 0]])
    np.testing.assert_array_equal(dh2, [[-1, 1, 0]])


def test_l1_gradient_check():
    rng = np.random.default_rng(0)
    results = check_layer(L1Distance(dtype=np.float64),
                          {"h1": rng.standard_normal((4, 5)), "h2": rng.standard_normal((4, 5))})
    assert [r.tensor for r in results] == ["h1", "h2"]
    assert all(r.passed for r in results), results


def test_l1_bad_input():
    layer = L1Distance()
    with pytest.raises(ValueError, match="L1Distance.forward: h2 must have shape"):
        layer.forward(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="L1Distance.forward: h1"):
        layer.forward(np.ones((2, 3), np.float64), np.ones((2, 3), np.float32))
