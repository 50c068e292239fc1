"""Conv2D: the im2col kernels against the loop reference, shapes, errors, PyTorch."""
import numpy as np
import pytest

from npsiamese import conv
from npsiamese import threads as threads_module
from npsiamese.conv import Conv2D, conv2d_backward, conv2d_forward
from npsiamese.gradcheck import numerical_gradient, rel_error
from npsiamese.reference import conv2d_backward_reference, conv2d_forward_reference

DTYPES = [np.float32, np.float64]
# (N, C, H, W, F, kernel_size, stride, pad)
CASES = [
    (1, 1, 5, 5, 1, 3, 1, 0),                # smallest: one image, one channel, one filter
    (2, 3, 7, 6, 4, (3, 2), 1, 1),           # odd sizes, rectangular kernel
    (2, 2, 8, 9, 3, 3, 2, 2),                # stride 2, pad 2
    (3, 1, 9, 7, 2, (2, 3), 3, 0),           # stride 3 drops the last rows/columns
    (2, 4, 6, 6, 5, 1, 1, 0),                # 1x1 kernel
    (1, 3, 5, 7, 2, (5, 1), (2, 3), (1, 2)),  # rectangular stride and pad
    (2, 2, 4, 4, 3, 4, 1, 0),                # kernel as large as the input: 1x1 output
    (2, 1, 3, 3, 2, 5, 1, 1),                # kernel larger than the input, fits with padding
]


# 3x3, stride 1: these take the Winograd path (the fixture below lowers its size thresholds)
WINOGRAD_CASES = [
    (2, 16, 5, 5, 3, 3, 1, 1),               # odd output: the last tiles are cut
    (2, 16, 6, 7, 4, 3, 1, 0),               # no padding, rectangular
    (1, 17, 4, 9, 2, 3, 1, 2),               # pad 2
    (3, 16, 1, 1, 2, 3, 1, 1),               # one pixel
    (2, 20, 8, 8, 5, 3, 1, (1, 0)),          # different pad per side
]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def small_winograd_thresholds(monkeypatch):
    """Let the small test images of WINOGRAD_CASES take the Winograd path."""
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 16)
    monkeypatch.setattr(conv, "WINOGRAD_MIN_PIXELS", 1)


def assert_close(actual, expected, dtype):
    """float32 kernels vs a float64 reference: relative 1e-4; float64: 1e-10."""
    tol = 1e-4 if dtype == np.float32 else 1e-10
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def make_inputs(rng, dtype, N, C, H, W, F, kernel_size):
    HH, WW = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, HH, WW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, C, H, W, F, kernel_size, stride, pad", CASES + WINOGRAD_CASES)
def test_forward_backward_match_reference(rng, dtype, N, C, H, W, F, kernel_size, stride, pad):
    x, w, b = make_inputs(rng, dtype, N, C, H, W, F, kernel_size)
    out, cache = conv2d_forward(x, w, b, stride, pad)
    assert out.dtype == dtype and out.flags.c_contiguous
    # the truth: the reference in float64 on the same numbers
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    assert_close(out, conv2d_forward_reference(x64, w64, b64, stride, pad), dtype)

    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = conv2d_backward(dout, cache)
    dx_ref, dw_ref, db_ref = conv2d_backward_reference(dout.astype(np.float64), x64, w64, stride, pad)
    for got, ref in ((dx, dx_ref), (dw, dw_ref), (db, db_ref)):
        assert got.dtype == dtype and got.shape == ref.shape and got.flags.c_contiguous
        assert_close(got, ref, dtype)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunks_and_threads_give_the_same_answer(rng, monkeypatch, threads):
    """Splitting the batch over threads and chunks (the last one short) changes nothing."""
    x, w, b = make_inputs(rng, np.float64, 7, 2, 7, 7, 3, 3)
    monkeypatch.setattr(conv, "_CHUNK_BYTES", 10**9)  # the whole batch in one chunk
    monkeypatch.setattr(threads_module.numba, "get_num_threads", lambda: 1)
    out_one, cache_one = conv2d_forward(x, w, b, 1, 1)
    dout = rng.standard_normal(out_one.shape)
    grads_one = conv2d_backward(dout, cache_one)
    monkeypatch.setattr(conv, "_CHUNK_BYTES", 1)  # one image per chunk
    monkeypatch.setattr(threads_module.numba, "get_num_threads", lambda: threads)
    out_many, cache_many = conv2d_forward(x, w, b, 1, 1)
    np.testing.assert_allclose(out_many, out_one, rtol=1e-12, atol=1e-12)
    for got, ref in zip(conv2d_backward(dout, cache_many), grads_one):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_winograd_cases_take_the_winograd_path_and_agree_with_im2col(rng, monkeypatch):
    from npsiamese import winograd
    calls = []
    monkeypatch.setattr(conv, "winograd_forward", lambda *a: calls.append("f") or winograd.winograd_forward(*a))
    monkeypatch.setattr(conv, "winograd_backward", lambda *a: calls.append("b") or winograd.winograd_backward(*a))
    for N, C, H, W, F, k, stride, pad in WINOGRAD_CASES:
        x, w, b = make_inputs(rng, np.float64, N, C, H, W, F, k)
        out, cache = conv2d_forward(x, w, b, stride, pad)
        dout = rng.standard_normal(out.shape)
        grads = conv2d_backward(dout, cache)
        monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 10**9)    # the same through im2col
        out_i, cache_i = conv2d_forward(x, w, b, stride, pad)
        np.testing.assert_allclose(out, out_i, rtol=1e-12, atol=1e-12)
        for got, ref in zip(grads, conv2d_backward(dout, cache_i)):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
        monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 16)
    assert calls == ["f", "b"] * len(WINOGRAD_CASES)
    # a first layer (one channel), 5x5 filters and stride 2 stay on im2col
    monkeypatch.undo()
    assert conv._winograd_applies(64, 3, 3, (1, 1), 17 * 17)      # the compact net's second conv
    assert not conv._winograd_applies(1, 3, 3, (1, 1), 35 * 35)   # a first layer (one channel)
    assert conv._winograd_applies(64, 3, 3, (1, 1), 4 * 4)        # its fourth
    assert not conv._winograd_applies(64, 3, 3, (1, 1), 3 * 3)    # a tiny image
    assert not conv._winograd_applies(64, 5, 5, (1, 1), 17 * 17)  # other kernels and strides
    assert not conv._winograd_applies(64, 3, 3, (2, 2), 17 * 17)
    assert Conv2D(64, 64, 3, pad=1).algorithm((64, 17, 17)) == "winograd"
    assert Conv2D(1, 64, 3, pad=1).algorithm((1, 35, 35)) == "im2col"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_winograd_chunks_and_threads_give_the_same_answer(rng, monkeypatch, threads):
    from npsiamese import winograd
    x, w, b = make_inputs(rng, np.float64, 7, 16, 7, 6, 3, 3)
    monkeypatch.setattr(winograd, "_CHUNK_BYTES", 10**9)
    monkeypatch.setattr(threads_module.numba, "get_num_threads", lambda: 1)
    out_one, cache_one = conv2d_forward(x, w, b, 1, 1)
    dout = rng.standard_normal(out_one.shape)
    grads_one = conv2d_backward(dout, cache_one)
    monkeypatch.setattr(winograd, "_CHUNK_BYTES", 1)  # one image per chunk
    monkeypatch.setattr(threads_module.numba, "get_num_threads", lambda: threads)
    out_many, cache_many = conv2d_forward(x, w, b, 1, 1)
    np.testing.assert_allclose(out_many, out_one, rtol=1e-12, atol=1e-12)
    for got, ref in zip(conv2d_backward(dout, cache_many, needs_input_grad=threads != 2), grads_one):
        if got is not None:
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_reference_backward_matches_finite_differences(rng):
    """The reference itself: centred differences of sum(out * dout) in float64."""
    x, w, b = make_inputs(rng, np.float64, 2, 2, 5, 4, 3, (3, 2))
    stride, pad = (2, 1), 1
    dout = rng.standard_normal(conv2d_forward_reference(x, w, b, stride, pad).shape)
    grads = conv2d_backward_reference(dout, x, w, stride, pad)

    def loss():
        return np.sum(conv2d_forward_reference(x, w, b, stride, pad) * dout)

    for arr, grad in zip((x, w, b), grads):
        assert rel_error(grad, numerical_gradient(loss, arr)) < 1e-7


@pytest.mark.parametrize("H, W, kernel_size, stride, pad", [
    (105, 105, 10, 1, 0), (28, 28, 3, 1, 1), (9, 8, (4, 3), (2, 3), (1, 0)), (5, 5, 5, 1, 0),
])
def test_output_size_formula(rng, H, W, kernel_size, stride, pad):
    layer = Conv2D(2, 3, kernel_size, stride, pad, dtype=np.float64)
    (HH, WW), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.pad
    expected = (3, out_size(H, HH, sh, ph), out_size(W, WW, sw, pw))
    assert layer.output_shape((2, H, W)) == expected
    if H * W < 1000:  # run the small ones for real
        out = layer.forward(rng.standard_normal((1, 2, H, W)))
        assert out.shape == (1, *expected)


def test_layer_backward_accumulates_gradients(rng):
    layer = Conv2D(2, 3, (3, 2), stride=1, pad=1, dtype=np.float64)
    layer.params["w"][...] = rng.standard_normal(layer.params["w"].shape)
    layer.params["b"][...] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 5, 6))
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx_ref, dw_ref, db_ref = conv2d_backward_reference(dout, x, layer.params["w"], 1, 1)

    dx = layer.backward(dout)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["w"], dw_ref, rtol=1e-10, atol=1e-10)
    layer.backward(dout)  # a second call adds (micrograd's +=): twice the gradient
    np.testing.assert_allclose(layer.grads["w"], 2 * dw_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["b"], 2 * db_ref, rtol=1e-10, atol=1e-10)
    layer.zero_grad()
    assert not layer.grads["w"].any() and not layer.grads["b"].any()


def test_layer_without_input_grad_skips_dx(rng):
    layer = Conv2D(1, 2, 3, needs_input_grad=False)
    layer.params["w"][...] = rng.standard_normal(layer.params["w"].shape)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    dout = rng.standard_normal(layer.forward(x).shape).astype(np.float32)
    assert layer.backward(dout) is None
    _, dw_ref, _ = conv2d_backward_reference(dout.astype(np.float64), x.astype(np.float64),
                                             layer.params["w"].astype(np.float64))
    assert_close(layer.grads["w"], dw_ref, np.float32)


def test_layer_construction_and_repr():
    layer = Conv2D(1, 64, 10)
    assert layer.params["w"].shape == (64, 1, 10, 10) and layer.params["b"].shape == (64,)
    assert layer.params["w"].dtype == np.float32 and not layer.params["w"].any()
    assert set(layer.grads) == {"w", "b"}
    assert repr(layer) == ("Conv2D(1, 64, kernel_size=(10, 10), stride=(1, 1), pad=(0, 0), "
                           "dtype=float32)")
    assert "(3, 2)" in repr(Conv2D(1, 2, (3, 2), stride=(1, 2), dtype=np.float64))


# --------------------------------------------------------------------------- errors
@pytest.fixture
def layer():
    return Conv2D(3, 4, 3, dtype=np.float32)


@pytest.fixture
def x(rng):
    return rng.standard_normal((2, 3, 6, 6)).astype(np.float32)


def test_wrong_ndim(layer, x):
    with pytest.raises(ValueError, match=r"Conv2D\.forward.*4 dimensions"):
        layer.forward(x[0])


def test_wrong_channel_count(layer, x):
    with pytest.raises(ValueError, match=r"Conv2D\.forward.*shape \(\*, 3, \*, \*\)"):
        layer.forward(x[:, :2].copy())
    with pytest.raises(ValueError, match="Conv2D"):
        layer.output_shape((2, 6, 6))


@pytest.mark.parametrize("bad_dtype", [np.float64, np.int64])
def test_wrong_dtype(layer, x, bad_dtype):
    with pytest.raises(TypeError, match=r"Conv2D\.forward.*float32"):
        layer.forward(x.astype(bad_dtype))


def test_not_an_array(layer, x):
    with pytest.raises(TypeError, match=r"Conv2D\.forward"):
        layer.forward(x.tolist())


def test_non_contiguous(layer, rng):
    x = rng.standard_normal((2, 3, 6, 12)).astype(np.float32)[:, :, :, ::2]
    with pytest.raises(ValueError, match=r"Conv2D\.forward.*contiguous"):
        layer.forward(x)


def test_nan(layer, x):
    x[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"Conv2D\.forward.*NaN"):
        layer.forward(x)


def test_kernel_larger_than_padded_input(rng):
    layer = Conv2D(1, 2, (3, 6), pad=1)
    x = rng.standard_normal((1, 1, 5, 3)).astype(np.float32)  # padded 7x5: width 5 < 6
    with pytest.raises(ValueError, match=r"Conv2D\.forward.*larger than the padded input"):
        layer.forward(x)
    with pytest.raises(ValueError, match="Conv2D"):
        layer.output_shape((1, 5, 3))


def test_backward_before_forward(layer, x):
    with pytest.raises(RuntimeError, match=r"Conv2D\.backward.*before forward"):
        layer.backward(np.zeros((2, 4, 4, 4), np.float32))


def test_dout_wrong_shape_or_dtype(layer, x):
    out = layer.forward(x)
    with pytest.raises(ValueError, match=r"Conv2D\.backward.*dout.*shape \(2, 4, 4, 4\)"):
        layer.backward(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(TypeError, match=r"Conv2D\.backward.*dout"):
        layer.backward(np.zeros(out.shape, np.float64))


@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [np.inf, -np.inf]])
def test_dout_not_finite(layer, x, bad):
    dout = np.zeros(layer.forward(x).shape, np.float32)
    dout[0, 1, 0, : len(bad)] = bad  # +inf and -inf in one filter sum to NaN: still caught
    with pytest.raises(ValueError, match=r"Conv2D\.backward.*dout.*NaN or infinite"):
        layer.backward(dout)
    assert not layer.grads["w"].any()  # nothing was added


@pytest.mark.parametrize("bad", [[np.nan], [np.inf, -np.inf]])
def test_dout_not_finite_on_the_winograd_path(rng, bad):
    layer = Conv2D(16, 4, 3, pad=1)
    layer.params["w"][...] = rng.standard_normal(layer.params["w"].shape)
    dout = np.zeros(layer.forward(rng.standard_normal((2, 16, 5, 5)).astype(np.float32)).shape, np.float32)
    dout[1, 2, 3, : len(bad)] = bad
    with pytest.raises(ValueError, match=r"Conv2D\.backward.*dout.*NaN or infinite"):
        layer.backward(dout)
    assert not layer.grads["w"].any()


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="Conv2D.*kernel_size"):
        Conv2D(1, 2, 0)
    with pytest.raises(ValueError, match="Conv2D.*kernel_size"):
        Conv2D(1, 2, (3, 3, 3))
    with pytest.raises(TypeError, match="Conv2D.*stride"):
        Conv2D(1, 2, 3, stride=1.5)
    with pytest.raises(ValueError, match="Conv2D.*pad"):
        Conv2D(1, 2, 3, pad=-1)
    with pytest.raises(TypeError, match="Conv2D.*dtype"):
        Conv2D(1, 2, 3, dtype=np.int32)


def test_function_errors_name_the_function(rng):
    x, w, b = make_inputs(rng, np.float32, 1, 2, 5, 5, 3, 3)
    with pytest.raises(TypeError, match=r"conv2d_forward.*x.*float32"):
        conv2d_forward(x.astype(np.float64), w, b)
    with pytest.raises(ValueError, match=r"conv2d_forward.*b.*shape"):
        conv2d_forward(x, w, b[:2].copy())
    with pytest.raises(ValueError, match=r"conv2d_forward.*stride"):
        conv2d_forward(x, w, b, stride=0)
    _, cache = conv2d_forward(x, w, b)
    with pytest.raises(ValueError, match=r"conv2d_backward.*dout"):
        conv2d_backward(np.zeros((1, 3, 2, 2), np.float32), cache)


# --------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("kernel_size, stride, pad", [(3, 1, 0), ((3, 2), (2, 1), (1, 2))])
def test_matches_pytorch(rng, kernel_size, stride, pad):
    torch = pytest.importorskip("torch")
    x, w, b = make_inputs(rng, np.float64, 2, 3, 8, 7, 4, kernel_size)
    out, cache = conv2d_forward(x, w, b, stride, pad)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out_t = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=pad)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-10)
    for got, t in ((dx, xt), (dw, wt), (db, bt)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-10)
