"""Element-wise activations: ReLU and Sigmoid.

Both are plain NumPy: one pass over memory, nothing a loop kernel would beat.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_array
from .base import Layer


def relu_forward(x):
    """out = max(0, x). Any shape. Returns ``(out, cache)`` with cache = out."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    """dx = dout * [x > 0]; the kink at 0 gets gradient 0. Returns ``dx``."""
    out = cache
    return dout * (out > 0)


def sigmoid(x):
    """sigma(x) = 1 / (1 + exp(-x)), evaluated without overflow for any x.

    For x >= 0 use 1 / (1 + e^-x); for x < 0 use e^x / (1 + e^x). Both only
    ever exponentiate a non-positive number.
    """
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(x.dtype, copy=False)


def sigmoid_forward(x):
    """out = sigma(x). Any shape. Returns ``(out, cache)`` with cache = out."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """d sigma / dx = sigma (1 - sigma). Returns ``dx``."""
    out = cache
    return dout * out * (1 - out)


class ReLU(Layer):
    """ReLU layer, any input shape."""

    def forward(self, x):
        check_array(x, "ReLU.forward", "x", dtype=self.dtype, finite=self.check_finite)
        out, self.cache = relu_forward(x)
        return out

    def backward(self, dout):
        out = self._need_cache()
        check_array(dout, "ReLU.backward", "dout", dtype=self.dtype, shape=out.shape,
                    finite=self.check_finite)
        return relu_backward(dout, out)


class Sigmoid(Layer):
    """Sigmoid layer, any input shape."""

    def forward(self, x):
        check_array(x, "Sigmoid.forward", "x", dtype=self.dtype, finite=self.check_finite)
        out, self.cache = sigmoid_forward(x)
        return out

    def backward(self, dout):
        out = self._need_cache()
        check_array(dout, "Sigmoid.backward", "dout", dtype=self.dtype, shape=out.shape,
                    finite=self.check_finite)
        return sigmoid_backward(dout, out)
