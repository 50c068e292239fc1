"""2-D convolution: im2col loop kernels plus BLAS matrix multiplies.

A convolution is a matrix multiply in disguise. Copy every receptive field of
the (padded) image ``n`` into one column of a matrix ``cols[n]`` ("im2col");
then every output pixel is the dot product of one filter with one column::

    out[n] = [w.reshape(F, K) | b] @ cols[n]       (F, K+1) @ (K+1, P) -> (F, P)

with ``K = C*HH*WW`` numbers per receptive field and ``P = H_out*W_out``
output pixels, and ``out[n]`` (F, P) is already image ``n``'s output in its
(F, H_out, W_out) layout. The last row of ``cols[n]`` is all ones: the bias
is the weight of a constant input, so the multiply adds it too. The two loop
kernels below only move data (im2col and its adjoint col2im); all the
arithmetic is NumPy's ``@``, which is BLAS. The same trick gives both
gradients::

    [dw | db] = sum over n of dout[n] @ cols[n].T  (F, P) @ (P, K+1) -> (F, K+1)
    dcols[n]  = w.reshape(F, K).T @ dout[n]        (K, F) @ (F, P) -> (K, P)
    dx[n]     = col2im(dcols[n])     (each column added back where it was copied from)

``cols`` is large ((K+1)*P numbers per image: 666 KB for one image of the
compact net's second layer, 22 MB for the Koch net's), so the wrappers never
build it for the whole batch. Each of the CPU threads takes a contiguous
slice of the images (``threads.parallel_ranges``) and works through it a
chunk of images at a time, with one scratch buffer small enough to stay in
the core's cache, and one zero-bordered scratch image into which each image
is copied before im2col (the border is the padding, so no copy of the whole
padded batch is made); ``cols`` is recomputed in the backward pass rather
than kept. The threads write disjoint images of ``out`` and ``dx``; each sums its
own ``dw`` and the wrapper adds them.
The slow, obviously-correct versions are in ``npsiamese.reference``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ._checks import check_array, check_positive_int, pair
from .base import Layer
from .threads import parallel_ranges
from .winograd import winograd_backward, winograd_forward

# Scratch memory per chunk of images (cols plus its matrix-multiply output), in
# bytes: small enough to stay in one core's L2 cache between im2col and BLAS.
_CHUNK_BYTES = 1 * 2**20

# 3x3, stride-1 convolutions with at least this many input channels and output
# pixels go through Winograd's F(2x2, 3x3) (npsiamese/winograd.py): 2.25x fewer
# multiplies. With few channels (a first layer on grey images) im2col's
# multiplies are cheap, and on small images the transforms cost more than they save.
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_PIXELS = 16   # measured on the compact net: Winograd wins at 17x17, 8x8 and 4x4


# --------------------------------------------------------------------------- kernels
# No parallel=True: the wrappers already run one kernel call per thread, on
#   disjoint images (nogil=True lets those calls run at the same time).
# cache=True: compiled once per dtype and kept on disk, so later runs start at once.
# fastmath=False: these kernels only copy and add, so it would buy nothing.

@njit(nogil=True, cache=True, fastmath=False)
def _im2col_kernel(x, HH, WW, stride_h, stride_w, pad_h, pad_w, cols, xp):
    """Kernel for ``conv2d_forward``/``conv2d_backward``: fill ``cols`` from ``x``.

    x: (n, C, H, W) images; cols: (n, K + 1, P); xp: (C, H + 2*pad_h, W + 2*pad_w)
    scratch whose border is zero. For each image, x[n] is copied into the
    middle of xp (the border is the padding), then
    cols[n, (c, kh, kw), (i, j)] = xp[c, i*stride_h + kh, j*stride_w + kw]
    and the last row, cols[n, K, :], is 1 (the bias's input).
    """
    N, C, H, W = x.shape
    H_out = (H + 2 * pad_h - HH) // stride_h + 1
    W_out = (W + 2 * pad_w - WW) // stride_w + 1
    for n in range(N):
        for c in range(C):
            for r in range(H):
                for col in range(W):
                    xp[c, pad_h + r, pad_w + col] = x[n, c, r, col]
        for c in range(C):
            for kh in range(HH):
                for kw in range(WW):
                    k = (c * HH + kh) * WW + kw  # row of cols for this filter tap
                    for i in range(H_out):
                        # output row i of this tap: W_out pixels from input row i*stride_h + kh.
                        # Through views that start at 0 (so the compiler sees non-negative
                        # indices) and with stride 1 spelled out, the copy becomes SIMD:
                        # measured 2x faster.
                        dst = cols[n, k, i * W_out:(i + 1) * W_out]
                        src = xp[c, i * stride_h + kh, kw:]
                        if stride_w == 1:
                            for j in range(W_out):
                                dst[j] = src[j]
                        else:
                            for j in range(W_out):
                                dst[j] = src[j * stride_w]
        for p in range(H_out * W_out):
            cols[n, C * HH * WW, p] = 1


@njit(nogil=True, cache=True, fastmath=False)
def _col2im_kernel(dcols, HH, WW, stride_h, stride_w, pad_h, pad_w, dx, dxp):
    """Kernel for ``conv2d_backward``: the adjoint of ``_im2col_kernel``.

    dcols: (n, K + 1, P) (the last row, the bias's, is not read); dx: (n, C, H, W),
    overwritten; dxp: (C, H + 2*pad_h, W + 2*pad_w) scratch. For each image, dxp is
    zeroed, then dxp[c, i*stride_h + kh, j*stride_w + kw] += dcols[n, (c, kh, kw), (i, j)]
    (``+=`` because overlapping receptive fields share input pixels), and
    dx[n] is the middle of dxp: what landed on the padding is dropped.
    """
    N, C, H, W = dx.shape
    Hp, Wp = dxp.shape[1], dxp.shape[2]
    H_out = (Hp - HH) // stride_h + 1
    W_out = (Wp - WW) // stride_w + 1
    for n in range(N):
        for c in range(C):
            for r in range(Hp):
                for col in range(Wp):
                    dxp[c, r, col] = 0
            for kh in range(HH):
                for kw in range(WW):
                    k = (c * HH + kh) * WW + kw
                    for i in range(H_out):
                        src = dcols[n, k, i * W_out:(i + 1) * W_out]
                        dst = dxp[c, i * stride_h + kh, kw:]
                        if stride_w == 1:
                            for j in range(W_out):
                                dst[j] += src[j]
                        else:
                            for j in range(W_out):
                                dst[j * stride_w] += src[j]
            for r in range(H):
                for col in range(W):
                    dx[n, c, r, col] = dxp[c, pad_h + r, pad_w + col]


# --------------------------------------------------------------------------- functions
class Conv2DCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""

    x: np.ndarray         # (N, C, H, W), the input (a reference, not a copy)
    w: np.ndarray         # (F, C, HH, WW), the weights used (a reference, not a copy)
    stride: tuple         # (stride_h, stride_w)
    pad: tuple            # (pad_h, pad_w)


def conv_output_size(H, W, HH, WW, stride, pad, where="conv2d"):
    """Return ``(H_out, W_out)``; raise ValueError if the kernel does not fit.

    H_out = (H + 2*pad_h - HH) // stride_h + 1, and the same for W.
    """
    (stride_h, stride_w), (pad_h, pad_w) = stride, pad
    if HH > H + 2 * pad_h or WW > W + 2 * pad_w:
        raise ValueError(
            f"{where}: kernel {HH}x{WW} is larger than the padded input "
            f"{H + 2 * pad_h}x{W + 2 * pad_w} (input {H}x{W}, pad {tuple(pad)}). "
            f"Use a larger input, more padding or a smaller kernel."
        )
    return (H + 2 * pad_h - HH) // stride_h + 1, (W + 2 * pad_w - WW) // stride_w + 1


def _winograd_applies(C, HH, WW, stride, P):
    return (HH == 3 and WW == 3 and tuple(stride) == (1, 1) and C >= WINOGRAD_MIN_CHANNELS
            and P >= WINOGRAD_MIN_PIXELS)


def _check_db(db, where):
    # NaN and inf survive summation, so checking the F sums db[f] checks all
    # of dout (a sum that overflows is reported too).
    if not np.isfinite(db).all():
        raise ValueError(f"{where}: dout contains NaN or infinite value(s); "
                         f"check the data or lower the learning rate.")


def _chunk_size(K, F, P, itemsize):
    """Images per chunk: scratch (cols and the product) within _CHUNK_BYTES, at least one."""
    return max(1, _CHUNK_BYTES // ((K + 1 + F) * P * itemsize))


def conv2d_forward(x, w, b, stride=1, pad=0, *, where="conv2d_forward", check_finite=True):
    """Forward pass of a 2-D convolution (cross-correlation, as in PyTorch).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input images, float32 or float64, C-contiguous, finite.
    w : ndarray, shape (F, C, HH, WW)
        Filters, same dtype as ``x``.
    b : ndarray, shape (F,)
        Biases, same dtype as ``x``.
    stride : int or (int, int)
        Step ``(stride_h, stride_w)`` between receptive fields.
    pad : int or (int, int)
        Zeros ``(pad_h, pad_w)`` added on each side of H and W.
    where : str
        Name used in error messages (layers pass e.g. ``"Conv2D.forward"``).
    check_finite : bool
        Reject NaN and infinity in ``x`` (one extra pass over it).

    Returns
    -------
    out : ndarray, shape (N, F, H_out, W_out)
        ``H_out = (H + 2*pad_h - HH) // stride_h + 1``, likewise ``W_out``.
    cache : Conv2DCache
        Input, weights, stride and pad, for ``conv2d_backward``.

    Notes
    -----
    With ``xp`` the zero-padded input, each output pixel is a dot product::

        out[n, f, i, j] = b[f] + sum over (c, kh, kw) of
                          w[f, c, kh, kw] * xp[n, c, i*stride_h + kh, j*stride_w + kw]

    computed image by image as ``[w.reshape(F, K) | b] @ cols[n]`` with
    ``cols[n]`` from im2col (its last row all ones), ``K = C*HH*WW``; 3x3
    stride-1 convolutions with ``C >= WINOGRAD_MIN_CHANNELS`` and
    ``H_out * W_out >= WINOGRAD_MIN_PIXELS`` use Winograd's algorithm instead
    (``npsiamese.winograd``), which gives the same numbers.
    """
    stride = pair(stride, where, "stride")
    pad = pair(pad, where, "pad", minimum=0)
    check_array(w, where, "w", ndim=4)
    F, C, HH, WW = w.shape
    check_array(x, where, "x", ndim=4, dtype=w.dtype, shape=(None, C, None, None), finite=check_finite)
    check_array(b, where, "b", ndim=1, dtype=w.dtype, shape=(F,))
    N, _, H, W = x.shape
    H_out, W_out = conv_output_size(H, W, HH, WW, stride, pad, where)
    K, P = C * HH * WW, H_out * W_out
    if _winograd_applies(C, HH, WW, stride, P):
        out = winograd_forward(x, w, b, pad, np.empty((N, F, H_out, W_out), dtype=x.dtype))
        return out, Conv2DCache(x, w, stride, pad)

    w_rows = np.empty((F, K + 1), dtype=x.dtype)  # one filter per row, its bias last
    w_rows[:, :K] = w.reshape(F, K)
    w_rows[:, K] = b
    out = np.empty((N, F, P), dtype=x.dtype)  # viewed as (N, F, H_out, W_out) on return
    chunk = _chunk_size(K, F, P, x.itemsize)

    def images(lo, hi):  # one thread's share of the batch
        cols_buf = np.empty((chunk, K + 1, P), dtype=x.dtype)  # scratch, reused for every chunk
        xp = np.zeros((C, H + 2 * pad[0], W + 2 * pad[1]), dtype=x.dtype)  # one padded image
        for start in range(lo, hi, chunk):
            stop = min(start + chunk, hi)
            cols = cols_buf[: stop - start]
            _im2col_kernel(x[start:stop], HH, WW, *stride, *pad, cols, xp)
            # (F, K+1) @ (n, K+1, P) -> (n, F, P): one multiply per image, bias included, straight into out
            np.matmul(w_rows, cols, out=out[start:stop])

    parallel_ranges(images, N)
    return out.reshape(N, F, H_out, W_out), Conv2DCache(x, w, stride, pad)


def conv2d_backward(dout, cache, *, needs_input_grad=True, where="conv2d_backward"):
    """Backward pass of ``conv2d_forward``.

    Parameters
    ----------
    dout : ndarray, shape (N, F, H_out, W_out)
        Upstream gradient dL/dout, same dtype as the forward input.
    cache : Conv2DCache
        From ``conv2d_forward``.
    needs_input_grad : bool
        If False, skip ``dx`` (returned as None): the first layer's input is
        data, so its gradient is never used (PyTorch skips it too).
    where : str
        Name used in error messages.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None
    dw : ndarray, shape (F, C, HH, WW)
    db : ndarray, shape (F,)

    Notes
    -----
    Differentiating the forward sum term by term::

        db[f]             = sum over (n, i, j) of dout[n, f, i, j]
        dw[f, c, kh, kw]  = sum over (n, i, j) of dout[n, f, i, j] * xp[n, c, i*s_h + kh, j*s_w + kw]
        dxp[n, c, i*s_h + kh, j*s_w + kw] += sum over f of w[f, c, kh, kw] * dout[n, f, i, j]

    and ``dx`` is ``dxp`` with the padding cut off. In matrix form, image by
    image, ``[dw | db] += dout[n] @ cols[n].T`` (the ones row of ``cols``
    gives ``db``; computed as its transpose, ``cols[n] @ dout[n].T``, which
    BLAS runs faster) and
    ``dcols[n] = w_rows.T @ dout[n]`` followed by col2im, with ``dout[n]``
    laid out as (F, P).
    """
    x, w, stride, pad = cache
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out, W_out = conv_output_size(H, W, HH, WW, stride, pad, where)
    check_array(dout, where, "dout", ndim=4, dtype=w.dtype, shape=(N, F, H_out, W_out),
                finite=False)
    K, P = C * HH * WW, H_out * W_out
    if _winograd_applies(C, HH, WW, stride, P):
        with np.errstate(invalid="ignore", over="ignore"):  # reported just below instead
            db = dout.sum(axis=(0, 2, 3))
        _check_db(db, where)
        dx = np.empty_like(x) if needs_input_grad else None  # the kernels fill every pixel
        return dx, winograd_backward(dout, x, w, pad, dx), db

    w_rows = w.reshape(F, K)
    dout_rows = dout.reshape(N, F, P)  # image n's gradient as (F, P): no copy
    dx = np.empty_like(x) if needs_input_grad else None  # col2im fills every pixel
    chunk = _chunk_size(K, F, P, w.itemsize)

    def images(lo, hi):  # one thread's share of the batch; returns its part of [dw | db].T
        dw_cols = np.zeros((K + 1, F), dtype=w.dtype)  # transposed: (K+1, P) @ (P, F) suits BLAS better
        cols_buf = np.empty((chunk, K + 1, P), dtype=w.dtype)
        xp = np.zeros((C, H + 2 * pad[0], W + 2 * pad[1]), dtype=w.dtype)  # one padded image
        dxp = np.empty_like(xp) if needs_input_grad else None  # and its gradient
        for start in range(lo, hi, chunk):
            stop = min(start + chunk, hi)
            cols = cols_buf[: stop - start]
            _im2col_kernel(x[start:stop], HH, WW, *stride, *pad, cols, xp)
            for n in range(start, stop):
                dw_cols += cols[n - start] @ dout_rows[n].T  # (K+1, P) @ (P, F) -> (K+1, F)
            if needs_input_grad:
                # (K, F) @ (n, F, P) -> (n, K, P), written over cols (no longer needed)
                np.matmul(w_rows.T, dout_rows[start:stop], out=cols[:, :K])
                _col2im_kernel(cols, HH, WW, *stride, *pad, dx[start:stop], dxp)
        return dw_cols

    with np.errstate(invalid="ignore", over="ignore"):  # reported just below instead
        dw_db = sum(parallel_ranges(images, N))          # (K+1, F): dw.T, and db as the last row
    db = dw_db[K].copy()   # dout times the ones row of cols: the sum of dout
    _check_db(db, where)
    dw_rows = np.ascontiguousarray(dw_db[:K].T)  # (F, K)
    return dx, dw_rows.reshape(w.shape), db


# --------------------------------------------------------------------------- layer
class Conv2D(Layer):
    """2-D convolution layer: ``F`` filters of size ``C x HH x WW``.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``F``.
    kernel_size, stride : int or (int, int)
        ``(HH, WW)`` and ``(stride_h, stride_w)``.
    pad : int or (int, int)
        Zeros added on each side, ``(pad_h, pad_w)``.
    dtype : float32 or float64
    needs_input_grad : bool
        False for a first layer: ``backward`` then skips ``dx`` (returns None),
        which its data input never needs.

    Attributes
    ----------
    params, grads : dict
        ``"w"``: (F, C, HH, WW) and ``"b"``: (F,). Parameters start at zero;
        the network initialises them.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0,
                 dtype=np.float32, needs_input_grad=True):
        super().__init__(dtype)
        self.needs_input_grad = bool(needs_input_grad)
        self.in_channels = check_positive_int(in_channels, "Conv2D", "in_channels")
        self.out_channels = check_positive_int(out_channels, "Conv2D", "out_channels")
        self.kernel_size = pair(kernel_size, "Conv2D", "kernel_size")
        self.stride = pair(stride, "Conv2D", "stride")
        self.pad = pair(pad, "Conv2D", "pad", minimum=0)
        self._add_param("w", (self.out_channels, self.in_channels, *self.kernel_size))
        self._add_param("b", (self.out_channels,))

    def forward(self, x):
        """x: (N, C, H, W) -> out: (N, F, H_out, W_out)."""
        out, self.cache = conv2d_forward(x, self.params["w"], self.params["b"], self.stride, self.pad,
                                         where="Conv2D.forward", check_finite=self.check_finite)
        return out

    def backward(self, dout):
        """dout: (N, F, H_out, W_out) -> dx: (N, C, H, W); adds into grads["w"], grads["b"]."""
        cache = self._need_cache()
        dx, dw, db = conv2d_backward(dout, cache, needs_input_grad=self.needs_input_grad,
                                     where="Conv2D.backward")
        self.grads["w"] += dw
        self.grads["b"] += db
        return dx

    def algorithm(self, input_shape):
        """"winograd" or "im2col": how ``forward`` and ``backward`` compute this layer on (C, H, W) inputs."""
        _, H_out, W_out = self.output_shape(input_shape)
        return ("winograd" if _winograd_applies(self.in_channels, *self.kernel_size, self.stride, H_out * W_out)
                else "im2col")

    def output_shape(self, input_shape):
        """(C, H, W) -> (F, H_out, W_out)."""
        C, H, W = input_shape
        if C != self.in_channels:
            raise ValueError(f"Conv2D: input has {C} channels, the layer expects {self.in_channels}.")
        H_out, W_out = conv_output_size(H, W, *self.kernel_size, self.stride, self.pad, "Conv2D")
        return (self.out_channels, H_out, W_out)

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, pad={self.pad}, dtype={self.dtype.name}"
                + ("" if self.needs_input_grad else ", needs_input_grad=False") + ")")
