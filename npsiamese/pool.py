"""2-D max pooling: one loop kernel for each direction.

Forward takes the largest value of every ``pool_h x pool_w`` window and
remembers *where* it was (the arg-max, as a flat index ``row*W + col`` into
the image plane). Only that input pixel influenced the output, so backward
sends each upstream gradient back to it and every other pixel gets zero::

    dx[n, c, argmax[n, c, i, j]] += dout[n, c, i, j]

The ``+=`` matters when windows overlap (stride < pool size): one pixel can be
the maximum of several windows and then receives the sum of their gradients.
The slow, obviously-correct versions are in ``npsiamese.reference``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ._checks import check_array, pair
from .base import Layer
from .threads import parallel_ranges


# --------------------------------------------------------------------------- kernels
# parallel=True over the images: image n writes only out[n], argmax[n], dx[n].
#   (Measured: compiled this way the loops run about 5x faster than the same
#   loops in a plain serial kernel, even on one thread.)
# cache=True: compiled once per dtype and kept on disk (Numba can cache parallel
#   functions; the thread count is read at call time, not baked into the cache).
# fastmath=False: the comparisons must keep exact IEEE semantics (fastmath's
#   "no NaN" assumption would let the compiler reorder or drop them).

@njit(parallel=True, cache=True, fastmath=False)
def _maxpool_forward_kernel(x, pool_h, pool_w, stride_h, stride_w, out, argmax):
    """Kernel for ``maxpool2d_forward``: window maxima and their flat positions.

    One output row at a time: start from each window's top-left pixel, then
    sweep the other window positions (kh, kw) across the whole row, so that the
    innermost loop runs along contiguous memory.
    """
    N, C, H, W = x.shape
    H_out, W_out = out.shape[2], out.shape[3]
    for n in prange(N):  # image n writes only out[n] and argmax[n]
        for c in range(C):
            for i in range(H_out):
                r0 = i * stride_h  # top row of this row of windows
                for j in range(W_out):
                    out[n, c, i, j] = x[n, c, r0, j * stride_w]
                    argmax[n, c, i, j] = r0 * W + j * stride_w
                for kh in range(pool_h):
                    for kw in range(pool_w):
                        for j in range(W_out):
                            v = x[n, c, r0 + kh, j * stride_w + kw]
                            if v > out[n, c, i, j]:  # strict: on ties the first maximum wins
                                out[n, c, i, j] = v
                                argmax[n, c, i, j] = (r0 + kh) * W + j * stride_w + kw


@njit(parallel=True, cache=True, fastmath=False)
def _maxpool_backward_kernel(dout, argmax, dx_flat):
    """Kernel for ``maxpool2d_backward``: dx_flat = 0, then dx_flat[n, c, argmax] += dout."""
    N, C, H_out, W_out = dout.shape
    for n in prange(N):  # image n writes only dx_flat[n]
        for c in range(C):
            for p in range(dx_flat.shape[2]):  # zeroed here, in parallel and cache by cache
                dx_flat[n, c, p] = 0
            for i in range(H_out):
                for j in range(W_out):
                    dx_flat[n, c, argmax[n, c, i, j]] += dout[n, c, i, j]


# The 2x2, stride-2 pooling of every network here gets its own forward kernel:
# each window's four pixels are compared in registers and each output written
# once (measured 2x faster than the general kernel). Serial and nogil: the wrapper
# gives each thread a slice of the images (threads.parallel_ranges), which costs
# less to start than prange on small layers. (A 2x2 backward kernel written the
# same way was slower inside a training step than the general one, so there is none.)

@njit(nogil=True, cache=True, fastmath=False)
def _maxpool2x2_forward_kernel(x, out, argmax):
    """``_maxpool_forward_kernel`` for 2x2 windows with stride 2."""
    N, C, H, W = x.shape
    H_out, W_out = out.shape[2], out.shape[3]
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                top, bottom = x[n, c, 2 * i], x[n, c, 2 * i + 1]  # the window row's two input rows
                o, am = out[n, c, i], argmax[n, c, i]
                p0 = 2 * i * W  # flat index of the top row's first pixel
                for j in range(W_out):
                    m, p = top[2 * j], p0 + 2 * j  # strict >: on ties the first maximum wins
                    if top[2 * j + 1] > m:
                        m, p = top[2 * j + 1], p0 + 2 * j + 1
                    if bottom[2 * j] > m:
                        m, p = bottom[2 * j], p0 + W + 2 * j
                    if bottom[2 * j + 1] > m:
                        m, p = bottom[2 * j + 1], p0 + W + 2 * j + 1
                    o[j] = m
                    am[j] = p


# --------------------------------------------------------------------------- functions
class MaxPool2DCache(NamedTuple):
    """What ``maxpool2d_backward`` needs from the forward pass."""

    x_shape: tuple       # (N, C, H, W)
    argmax: np.ndarray   # (N, C, H_out, W_out) int32, flat index row*W + col of each maximum


def pool_output_size(H, W, pool_size, stride, where="maxpool2d"):
    """Return ``(H_out, W_out)``; raise ValueError if the window does not fit.

    H_out = (H - pool_h) // stride_h + 1, and the same for W (no padding).
    """
    (pool_h, pool_w), (stride_h, stride_w) = pool_size, stride
    if pool_h > H or pool_w > W:
        raise ValueError(
            f"{where}: pool window {pool_h}x{pool_w} is larger than the input {H}x{W}. "
            f"Use a smaller pool_size or remove a pooling layer."
        )
    return (H - pool_h) // stride_h + 1, (W - pool_w) // stride_w + 1


def maxpool2d_forward(x, pool_size=2, stride=None, *, where="maxpool2d_forward", check_finite=True):
    """Forward pass of 2-D max pooling (no padding).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input, float32 or float64, C-contiguous, finite.
    pool_size : int or (int, int)
        Window ``(pool_h, pool_w)``.
    stride : int or (int, int), optional
        Step ``(stride_h, stride_w)`` between windows; defaults to ``pool_size``.
    where : str
        Name used in error messages (layers pass e.g. ``"MaxPool2D.forward"``).
    check_finite : bool
        Reject NaN and infinity in ``x`` (one extra pass over it).

    Returns
    -------
    out : ndarray, shape (N, C, H_out, W_out)
        ``H_out = (H - pool_h) // stride_h + 1``, likewise ``W_out``; rows or
        columns that do not fill a whole window are dropped.
    cache : MaxPool2DCache
        Input shape and the arg-max of every window.

    Notes
    -----
    ::

        out[n, c, i, j] = max over (kh, kw) of x[n, c, i*stride_h + kh, j*stride_w + kw]

    The arg-max is the first maximum in row-major window order.
    """
    pool_size = pair(pool_size, where, "pool_size")
    stride = pool_size if stride is None else pair(stride, where, "stride")
    check_array(x, where, "x", ndim=4, finite=check_finite)
    N, C, H, W = x.shape
    H_out, W_out = pool_output_size(H, W, pool_size, stride, where)
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    argmax = np.empty((N, C, H_out, W_out), dtype=np.int32)
    if pool_size == (2, 2) and stride == (2, 2):
        parallel_ranges(lambda lo, hi: _maxpool2x2_forward_kernel(x[lo:hi], out[lo:hi], argmax[lo:hi]), N)
    else:
        _maxpool_forward_kernel(x, pool_size[0], pool_size[1], stride[0], stride[1], out, argmax)
    return out, MaxPool2DCache(x.shape, argmax)


def maxpool2d_backward(dout, cache, *, where="maxpool2d_backward", check_finite=True):
    """Backward pass of ``maxpool2d_forward``.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out)
        Upstream gradient dL/dout.
    cache : MaxPool2DCache
        From ``maxpool2d_forward``.
    where : str
        Name used in error messages.
    check_finite : bool
        Reject NaN and infinity in ``dout``.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        Zero except at the arg-max of each window.

    Notes
    -----
    The derivative of a max is 1 for the winning input and 0 for the others::

        dx[n, c, argmax[n, c, i, j]] += dout[n, c, i, j]   (flat index into the H*W plane)
    """
    x_shape, argmax = cache
    N, C, H, W = x_shape
    check_array(dout, where, "dout", ndim=4, shape=argmax.shape, finite=check_finite)
    dx = np.empty((N, C, H, W), dtype=dout.dtype)  # the kernel zeroes it
    _maxpool_backward_kernel(dout, argmax, dx.reshape(N, C, H * W))
    return dx


# --------------------------------------------------------------------------- layer
class MaxPool2D(Layer):
    """2-D max-pooling layer; no parameters.

    Parameters
    ----------
    pool_size : int or (int, int)
        Window ``(pool_h, pool_w)``.
    stride : int or (int, int), optional
        Defaults to ``pool_size`` (non-overlapping windows).
    dtype : float32 or float64
    """

    def __init__(self, pool_size=2, stride=None, dtype=np.float32):
        super().__init__(dtype)
        self.pool_size = pair(pool_size, "MaxPool2D", "pool_size")
        self.stride = self.pool_size if stride is None else pair(stride, "MaxPool2D", "stride")

    def forward(self, x):
        """x: (N, C, H, W) -> out: (N, C, H_out, W_out)."""
        check_array(x, "MaxPool2D.forward", "x", ndim=4, dtype=self.dtype, finite=False)
        out, self.cache = maxpool2d_forward(x, self.pool_size, self.stride,
                                            where="MaxPool2D.forward", check_finite=self.check_finite)
        return out

    def backward(self, dout):
        """dout: (N, C, H_out, W_out) -> dx: (N, C, H, W)."""
        cache = self._need_cache()
        check_array(dout, "MaxPool2D.backward", "dout", ndim=4, dtype=self.dtype, finite=False)
        return maxpool2d_backward(dout, cache, where="MaxPool2D.backward", check_finite=self.check_finite)

    def output_shape(self, input_shape):
        """(C, H, W) -> (C, H_out, W_out)."""
        C, H, W = input_shape
        return (C, *pool_output_size(H, W, self.pool_size, self.stride, "MaxPool2D"))

    def __repr__(self):
        return f"MaxPool2D(pool_size={self.pool_size}, stride={self.stride}, dtype={self.dtype.name})"
