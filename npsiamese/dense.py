"""Flatten and Dense (fully connected) layers.

Plain NumPy: ``x @ w`` already calls an optimised BLAS matrix multiply, so
there is no loop for a Numba kernel to win.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_array, check_positive_int
from .base import Layer


def dense_forward(x, w, b):
    """Affine map out = x @ w + b.

    Parameters
    ----------
    x : (N, D) array
    w : (D, M) array
    b : (M,) array

    Returns
    -------
    out : (N, M) array
    cache : (x, w)
    """
    out = x @ w + b
    return out, (x, w)


def dense_backward(dout, cache):
    """Gradients of out = x @ w + b.

    Parameters
    ----------
    dout : (N, M) upstream gradient dL/dout.

    Returns
    -------
    dx : (N, D) = dout @ w.T
    dw : (D, M) = x.T @ dout
    db : (M,)   = sum over the batch of dout
    """
    x, w = cache
    dx = dout @ w.T
    dw = x.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


class Flatten(Layer):
    """Reshape (N, C, H, W) -> (N, C*H*W); backward reshapes back. No parameters."""

    def forward(self, x):
        check_array(x, "Flatten.forward", "x", dtype=self.dtype, finite=self.check_finite)
        if x.ndim < 2:
            raise ValueError(f"Flatten.forward: x must have a batch axis and at least one more, got shape {x.shape}.")
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        shape = self._need_cache()
        check_array(dout, "Flatten.backward", "dout", dtype=self.dtype, ndim=2,
                    shape=(shape[0], int(np.prod(shape[1:]))), finite=self.check_finite)
        return dout.reshape(shape)

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)


class Dense(Layer):
    """Fully connected layer: (N, in_features) -> (N, out_features).

    Parameters ``w`` (in_features, out_features) and ``b`` (out_features,).
    """

    def __init__(self, in_features, out_features, dtype=np.float32):
        super().__init__(dtype)
        self.in_features = check_positive_int(in_features, "Dense", "in_features")
        self.out_features = check_positive_int(out_features, "Dense", "out_features")
        self._add_param("w", (self.in_features, self.out_features))
        self._add_param("b", (self.out_features,))

    def forward(self, x):
        check_array(x, "Dense.forward", "x", ndim=2, dtype=self.dtype, shape=(None, self.in_features),
                    finite=self.check_finite)
        out, self.cache = dense_forward(x, self.params["w"], self.params["b"])
        return out

    def backward(self, dout):
        x, _ = self._need_cache()
        check_array(dout, "Dense.backward", "dout", ndim=2, dtype=self.dtype,
                    shape=(x.shape[0], self.out_features), finite=self.check_finite)
        dx, dw, db = dense_backward(dout, self.cache)
        self.grads["w"] += dw
        self.grads["b"] += db
        return dx

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"Dense: expects inputs of shape ({self.in_features},), got {tuple(input_shape)}.")
        return (self.out_features,)

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"
