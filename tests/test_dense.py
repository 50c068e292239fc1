import numpy as np
import pytest

from npsiamese.dense import Dense, Flatten, dense_backward, dense_forward
from npsiamese.gradcheck import check_layer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_forward_matches_matmul(dtype):
    rng = np.random.default_rng(0)
    layer = Dense(5, 3, dtype=dtype)
    layer.params["w"][...] = rng.standard_normal((5, 3))
    layer.params["b"][...] = rng.standard_normal(3)
    x = rng.standard_normal((4, 5)).astype(dtype)
    out = layer.forward(x)
    expected = x.astype(np.float64) @ layer.params["w"].astype(np.float64) + layer.params["b"]
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_dense_gradients_pass_check():
    rng = np.random.default_rng(1)
    layer = Dense(6, 4, dtype=np.float64)
    layer.params["w"][...] = rng.standard_normal((6, 4))
    results = check_layer(layer, {"x": rng.standard_normal((3, 6))})
    assert [r.tensor for r in results] == ["x", "w", "b"]
    assert all(r.passed for r in results), results


def test_dense_backward_accumulates():
    rng = np.random.default_rng(2)
    layer = Dense(3, 2, dtype=np.float64)
    layer.params["w"][...] = rng.standard_normal((3, 2))
    x, dout = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(dout)
    once = layer.grads["w"].copy()
    layer.backward(dout)
    np.testing.assert_allclose(layer.grads["w"], 2 * once)
    layer.zero_grad()
    assert not layer.grads["w"].any() and not layer.grads["b"].any()


def test_dense_functional_pair_shapes():
    x, w, b = np.ones((2, 3)), np.ones((3, 4)), np.zeros(4)
    out, cache = dense_forward(x, w, b)
    dx, dw, db = dense_backward(np.ones_like(out), cache)
    assert out.shape == (2, 4) and dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    np.testing.assert_allclose(db, [2, 2, 2, 2])


def test_flatten_round_trip():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    layer = Flatten()
    out = layer.forward(x)
    assert out.shape == (2, 12)
    np.testing.assert_array_equal(layer.backward(out), x)
    assert layer.output_shape((3, 2, 2)) == (12,)


@pytest.mark.parametrize("bad, err, words", [
    (np.ones((2, 5), np.float64), TypeError, "float32"),
    (np.ones((2, 4), np.float32), ValueError, "shape"),
    (np.ones((2, 5, 1), np.float32), ValueError, "dimensions"),
    (np.ones((5, 2), np.float32).T, ValueError, "contiguous"),
    (np.full((2, 5), np.nan, np.float32), ValueError, "NaN"),
    ([[1.0] * 5], TypeError, "ndarray"),
])
def test_dense_bad_input(bad, err, words):
    with pytest.raises(err, match=words) as info:
        Dense(5, 3).forward(bad)
    assert "Dense.forward" in str(info.value)


def test_dense_backward_before_forward_and_bad_dout():
    layer = Dense(5, 3)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 3), np.float32))
    layer.forward(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="Dense.backward"):
        layer.backward(np.ones((2, 4), np.float32))


def test_flatten_bad_input():
    with pytest.raises(ValueError, match="Flatten.forward"):
        Flatten().forward(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="Flatten.forward"):
        Flatten().forward(np.ones((2, 3), np.int64))
