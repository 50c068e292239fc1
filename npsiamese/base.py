"""The layer contract every npsiamese layer follows.

A layer owns two dictionaries with the same keys: ``params`` (the weights)
and ``grads`` (their gradients). ``forward(x)`` returns the output and keeps
what ``backward`` needs; ``backward(dout)`` returns ``dx`` and *adds* the
parameter gradients into ``grads`` (micrograd's ``+=``): a layer called twice
before ``zero_grad()`` holds the sum of both calls' gradients. Every input is
validated (type, shape, dtype, and NaN/inf unless ``check_finite`` is False).
"""
from __future__ import annotations

import numpy as np


class Layer:
    """Base class: parameters, gradients and the forward/backward contract."""

    def __init__(self, dtype=np.float32):
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{type(self).__name__}: dtype must be float32 or float64, got {dtype}.")
        self.dtype = dtype
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.cache = None
        # False inside a network that checks its images on the way in and its
        # loss on the way out (see SiameseNetwork): every layer then skips the
        # NaN/inf pass over its inputs; shape and dtype checks stay.
        self.check_finite = True

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dout):  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, input_shape):
        """Per-sample output shape for a per-sample ``input_shape`` (no batch axis)."""
        return tuple(input_shape)

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def parameters(self):
        """Yield ``(key, param, grad)`` for every parameter of this layer."""
        for k in self.params:
            yield k, self.params[k], self.grads[k]

    def _add_param(self, key, shape):
        self.params[key] = np.zeros(shape, dtype=self.dtype)
        self.grads[key] = np.zeros(shape, dtype=self.dtype)

    def _need_cache(self):
        if self.cache is None:
            raise RuntimeError(f"{self.name}.backward called before forward: run forward(x) first.")
        return self.cache

    def __repr__(self):
        return f"{self.name}()"
