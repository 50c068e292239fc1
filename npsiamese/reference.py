"""Slow, obviously-correct reference versions of convolution and max pooling.

These read like the maths: a Python loop over output pixels ``(i, j)``, and
for each one a small NumPy expression over the batch and the channels. They
are what the fast kernels in ``conv.py`` and ``pool.py`` are tested against,
and what the tutorials time them against. They do no input checking.

Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,), out and dout
(N, F, H_out, W_out) with ``H_out = (H + 2*pad_h - HH) // stride_h + 1``.
"""
from __future__ import annotations

import numpy as np


def _pair(v):
    """``k`` -> ``(k, k)``; ``(h, w)`` stays as it is."""
    return (v, v) if np.isscalar(v) else tuple(v)


def conv2d_forward_reference(x, w, b, stride=1, pad=0):
    """out[n, f, i, j] = b[f] + sum_{c,kh,kw} w[f, c, kh, kw] * xp[n, c, i*sh + kh, j*sw + kw].

    x: (N, C, H, W), w: (F, C, HH, WW), b: (F,) -> out: (N, F, H_out, W_out).
    """
    (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = (H + 2 * ph - HH) // sh + 1
    W_out = (W + 2 * pw - WW) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # zeros around H and W
    w_rows = w.reshape(F, -1)                              # (F, C*HH*WW): one filter per row
    out = np.zeros((N, F, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            # the receptive field of output pixel (i, j), for every image
            window = xp[:, :, i * sh:i * sh + HH, j * sw:j * sw + WW]  # (N, C, HH, WW)
            # dot product of the window with every filter, plus the bias
            out[:, :, i, j] = window.reshape(N, -1) @ w_rows.T + b  # (N, F)
    return out


def conv2d_backward_reference(dout, x, w, stride=1, pad=0):
    """Gradients of ``conv2d_forward_reference``.

    dout: (N, F, H_out, W_out) -> dx: (N, C, H, W), dw: (F, C, HH, WW), db: (F,).
    Each output pixel (i, j) was ``window @ w_rows.T + b``, so it sends
    ``dout[:, :, i, j] @ w_rows`` back to its window and
    ``dout[:, :, i, j].T @ window`` to the weights.
    """
    (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    w_rows = w.reshape(F, -1)
    dxp = np.zeros_like(xp)
    dw_rows = np.zeros_like(w_rows)
    for i in range(H_out):
        for j in range(W_out):
            window = xp[:, :, i * sh:i * sh + HH, j * sw:j * sw + WW]  # (N, C, HH, WW)
            g = dout[:, :, i, j]                                       # (N, F)
            # d out / d w: the window, summed over the batch
            dw_rows += g.T @ window.reshape(N, -1)                     # (F, C*HH*WW)
            # d out / d window: the filters; += because windows overlap
            dxp[:, :, i * sh:i * sh + HH, j * sw:j * sw + WW] += (g @ w_rows).reshape(N, C, HH, WW)
    db = dout.sum(axis=(0, 2, 3))                                      # d out / d b = 1
    dx = dxp[:, :, ph:ph + H, pw:pw + W]                               # drop the padding
    return dx, dw_rows.reshape(w.shape), db


def maxpool2d_forward_reference(x, pool_size=2, stride=None):
    """out[n, c, i, j] = max of the window x[n, c, i*sh : i*sh + ph, j*sw : j*sw + pw].

    x: (N, C, H, W) -> out: (N, C, H_out, W_out), H_out = (H - ph) // sh + 1.
    """
    ph, pw = _pair(pool_size)
    sh, sw = (ph, pw) if stride is None else _pair(stride)
    N, C, H, W = x.shape
    H_out, W_out = (H - ph) // sh + 1, (W - pw) // sw + 1
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * sh:i * sh + ph, j * sw:j * sw + pw]  # (N, C, ph, pw)
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


def maxpool2d_backward_reference(dout, x, pool_size=2, stride=None):
    """Gradient of ``maxpool2d_forward_reference``: dout goes to each window's arg-max.

    dout: (N, C, H_out, W_out), x: (N, C, H, W) -> dx: (N, C, H, W).
    Ties go to the first maximum in row-major window order (``np.argmax``).
    """
    ph, pw = _pair(pool_size)
    sh, sw = (ph, pw) if stride is None else _pair(stride)
    N, C, H, W = x.shape
    _, _, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * sh:i * sh + ph, j * sw:j * sw + pw].reshape(N, C, ph * pw)
            # one-hot mask of the first maximum: d max / d x is 1 there, 0 elsewhere
            winner = window.argmax(axis=2)                            # (N, C)
            mask = np.arange(ph * pw) == winner[:, :, None]           # (N, C, ph*pw)
            # += because overlapping windows can share a maximum
            dx[:, :, i * sh:i * sh + ph, j * sw:j * sw + pw] += (
                mask * dout[:, :, i, j][:, :, None]).reshape(N, C, ph, pw)
    return dx
