"""MaxPool2D: the loop kernels against the reference, ties, overlaps, errors, PyTorch."""
import numpy as np
import pytest

from npsiamese.pool import MaxPool2D, maxpool2d_backward, maxpool2d_forward
from npsiamese.reference import maxpool2d_backward_reference, maxpool2d_forward_reference

DTYPES = [np.float32, np.float64]
# (N, C, H, W, pool_size, stride)
CASES = [
    (1, 1, 4, 4, 2, None),          # smallest: one image, one channel
    (2, 3, 7, 9, 2, None),          # odd sizes: the last row and column are dropped
    (2, 2, 8, 7, (3, 2), None),     # rectangular window
    (1, 3, 7, 7, 3, 1),             # overlapping windows, stride 1
    (2, 1, 9, 8, 2, 3),             # stride larger than the window: pixels skipped
    (3, 2, 6, 9, (2, 3), (1, 2)),   # rectangular window and stride
    (2, 2, 5, 5, 5, None),          # window as large as the input
]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, C, H, W, pool_size, stride", CASES)
def test_forward_backward_match_reference(rng, dtype, N, C, H, W, pool_size, stride):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    out, cache = maxpool2d_forward(x, pool_size, stride)
    # a max is exact, so both dtypes must agree to the last bit
    np.testing.assert_array_equal(out, maxpool2d_forward_reference(x, pool_size, stride))
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = maxpool2d_backward(dout, cache)
    assert dx.shape == x.shape and dx.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14  # overlapping windows add in another order
    np.testing.assert_allclose(dx, maxpool2d_backward_reference(dout, x, pool_size, stride),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("H, W", [(4, 6), (7, 9), (2, 3)])
def test_2x2_kernel_equals_the_general_kernel(rng, H, W):
    """The 2x2, stride-2 forward kernel against the general one, odd sizes and ties included."""
    from npsiamese import pool
    x = rng.integers(0, 3, (3, 2, H, W)).astype(np.float32)  # small integers: many ties
    out, cache = maxpool2d_forward(x, 2)
    out_g = np.empty_like(out)
    argmax_g = np.empty_like(cache.argmax)
    pool._maxpool_forward_kernel(x, 2, 2, 2, 2, out_g, argmax_g)
    np.testing.assert_array_equal(out, out_g)
    np.testing.assert_array_equal(cache.argmax, argmax_g)
    out_1, _ = maxpool2d_forward(x, 2, 1)   # another stride: the general kernel
    assert out_1.shape == (3, 2, H - 1, W - 1)


def test_ties_go_to_the_first_maximum():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 0] = x[0, 0, 1, 1] = 5.0  # a tie in the top-left window's second row
    out, cache = maxpool2d_forward(x, 2)
    dx = maxpool2d_backward(np.ones_like(out), cache)
    expected = np.zeros((4, 4))
    expected[1, 0] = 1.0  # first maximum in row-major order
    expected[0, 2] = 1.0  # an all-zero window: its first pixel
    expected[2, 0] = expected[2, 2] = 1.0
    np.testing.assert_array_equal(dx[0, 0], expected)
    np.testing.assert_array_equal(dx, maxpool2d_backward_reference(np.ones_like(out), x, 2))


def test_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the centre is the maximum of all four 2x2 windows
    out, cache = maxpool2d_forward(x, 2, 1)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = maxpool2d_backward(dout, cache)
    assert dx[0, 0, 1, 1] == 10.0 and dx.sum() == 10.0


@pytest.mark.parametrize("H, W, pool_size, stride", [
    (103, 103, 2, None), (96, 96, 2, None), (7, 9, (3, 2), (1, 2)), (5, 5, 5, None),
])
def test_output_size_formula(rng, H, W, pool_size, stride):
    layer = MaxPool2D(pool_size, stride, dtype=np.float64)
    (ph, pw), (sh, sw) = layer.pool_size, layer.stride
    expected = (3, (H - ph) // sh + 1, (W - pw) // sw + 1)
    assert layer.output_shape((3, H, W)) == expected
    assert layer.forward(rng.standard_normal((1, 3, H, W))).shape == (1, *expected)


def test_layer_round_trip_and_repr(rng):
    layer = MaxPool2D(2)
    assert layer.params == {} and layer.grads == {} and layer.stride == (2, 2)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dout), maxpool2d_backward_reference(dout, x, 2))
    assert repr(layer) == "MaxPool2D(pool_size=(2, 2), stride=(2, 2), dtype=float32)"


# --------------------------------------------------------------------------- errors
@pytest.fixture
def layer():
    return MaxPool2D(2, dtype=np.float32)


@pytest.fixture
def x(rng):
    return rng.standard_normal((2, 3, 6, 6)).astype(np.float32)


def test_wrong_ndim(layer, x):
    with pytest.raises(ValueError, match=r"MaxPool2D\.forward.*4 dimensions"):
        layer.forward(x[0])


@pytest.mark.parametrize("bad_dtype", [np.float64, np.int32])
def test_wrong_dtype(layer, x, bad_dtype):
    with pytest.raises(TypeError, match=r"MaxPool2D\.forward.*float32"):
        layer.forward(x.astype(bad_dtype))


def test_non_contiguous(layer, rng):
    x = rng.standard_normal((2, 3, 12, 6)).astype(np.float32)[:, :, ::2]
    with pytest.raises(ValueError, match=r"MaxPool2D\.forward.*contiguous"):
        layer.forward(x)


def test_nan(layer, x):
    x[1, 2, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"MaxPool2D\.forward.*NaN or infinite"):
        layer.forward(x)


def test_window_larger_than_input(rng):
    layer = MaxPool2D((2, 4))
    with pytest.raises(ValueError, match=r"MaxPool2D\.forward.*larger than the input"):
        layer.forward(rng.standard_normal((1, 1, 5, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="MaxPool2D"):
        layer.output_shape((1, 5, 3))


def test_backward_before_forward(layer):
    with pytest.raises(RuntimeError, match=r"MaxPool2D\.backward.*before forward"):
        layer.backward(np.zeros((2, 3, 3, 3), np.float32))


def test_dout_wrong_shape_or_dtype(layer, x):
    layer.forward(x)
    with pytest.raises(ValueError, match=r"MaxPool2D\.backward.*dout.*shape \(2, 3, 3, 3\)"):
        layer.backward(np.zeros((2, 3, 3, 2), np.float32))
    with pytest.raises(TypeError, match=r"MaxPool2D\.backward.*dout"):
        layer.backward(np.zeros((2, 3, 3, 3), np.float64))


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="MaxPool2D.*pool_size"):
        MaxPool2D(0)
    with pytest.raises(TypeError, match="MaxPool2D.*stride"):
        MaxPool2D(2, stride="2")


def test_function_errors_name_the_function(rng):
    with pytest.raises(ValueError, match=r"maxpool2d_forward.*4 dimensions"):
        maxpool2d_forward(rng.standard_normal((3, 4, 4)))
    _, cache = maxpool2d_forward(rng.standard_normal((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"maxpool2d_backward.*dout"):
        maxpool2d_backward(np.zeros((1, 1, 3, 3)), cache)


# --------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("pool_size, stride", [(2, None), ((3, 2), (1, 2))])
def test_matches_pytorch(rng, pool_size, stride):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 9, 8))  # continuous values: no ties
    out, cache = maxpool2d_forward(x, pool_size, stride)
    dout = rng.standard_normal(out.shape)
    dx = maxpool2d_backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.max_pool2d(xt, pool_size, stride)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-14, atol=1e-14)
