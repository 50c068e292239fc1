import numpy as np
import pytest

from npsiamese.activations import ReLU, Sigmoid, sigmoid
from npsiamese.gradcheck import check_layer


def test_relu_forward_backward_values():
    x = np.array([[-2.0, -0.5, 0.5, 3.0]], np.float32)
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(x), [[0, 0, 0.5, 3.0]])
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), [[0, 0, 1, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_huge_inputs(dtype):
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype)
    with np.errstate(over="raise"):
        out = sigmoid(x)
    assert out.dtype == dtype
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x.astype(np.float64).clip(-700, 700))), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("layer_cls, scale", [(ReLU, 1.0), (Sigmoid, 3.0)])
def test_activation_gradients(layer_cls, scale):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7)) * scale
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the ReLU kink
    results = check_layer(layer_cls(dtype=np.float64), {"x": x})
    assert len(results) == 1 and results[0].passed, results


@pytest.mark.parametrize("layer_cls", [ReLU, Sigmoid])
def test_activation_bad_input(layer_cls):
    layer = layer_cls()
    with pytest.raises(TypeError, match=f"{layer_cls.__name__}.forward"):
        layer.forward(np.ones((2, 2), np.float64))
    with pytest.raises(ValueError, match="NaN"):
        layer.forward(np.array([np.inf], np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        layer_cls().backward(np.ones(2, np.float32))
    layer.forward(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=f"{layer_cls.__name__}.backward"):
        layer.backward(np.ones((2, 3), np.float32))
