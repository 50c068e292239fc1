"""Binary cross-entropy on the similarity logit, in the numerically stable form.

With logit s, label y in {0, 1} and p = sigmoid(s):

    L = -[y log p + (1 - y) log(1 - p)]
      = max(s, 0) - s y + log(1 + exp(-|s|))

The second line never takes log(0) and never exponentiates a positive number,
so it is exact for s = +-1000. Its derivative is dL/ds = p - y.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_array
from .activations import sigmoid


def bce_with_logits_forward(s, y, weight=None):
    """Mean (or weighted mean) binary cross-entropy of logits.

    Parameters
    ----------
    s : (N,) logits.
    y : (N,) labels in {0, 1} (same dtype as s).
    weight : (N,) non-negative per-pair weights, optional. The loss is
        sum(weight * L) / sum(weight); without weights it is the plain mean.

    Returns
    -------
    loss : float
    cache : (s, y, weight)
    """
    per_pair = np.maximum(s, 0) - s * y + np.log1p(np.exp(-np.abs(s)))
    if weight is None:
        loss = float(per_pair.mean())
    else:
        loss = float((weight * per_pair).sum() / weight.sum())
    return loss, (s, y, weight)


def bce_with_logits_backward(cache):
    """dL/ds = (sigmoid(s) - y) / N, or weight (sigmoid(s) - y) / sum(weight).

    Returns ``ds``, shape (N,).
    """
    s, y, weight = cache
    ds = sigmoid(s) - y
    if weight is None:
        return ds / s.shape[0]
    return ds * (weight / weight.sum())


class BCEWithLogits:
    """Loss object: ``forward(s, y[, weight]) -> loss``, ``backward() -> ds``."""

    def __init__(self):
        self.cache = None

    def forward(self, s, y, weight=None):
        check_array(s, "BCEWithLogits.forward", "s", ndim=1)
        check_array(y, "BCEWithLogits.forward", "y", ndim=1, dtype=s.dtype, shape=s.shape)
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("BCEWithLogits.forward: y must hold only 0 (different) and 1 (same) labels.")
        if weight is not None:
            check_array(weight, "BCEWithLogits.forward", "weight", ndim=1, dtype=s.dtype, shape=s.shape)
            if (weight < 0).any() or weight.sum() <= 0:
                raise ValueError("BCEWithLogits.forward: weight must be non-negative with a positive sum.")
        loss, self.cache = bce_with_logits_forward(s, y, weight)
        return loss

    def backward(self):
        if self.cache is None:
            raise RuntimeError("BCEWithLogits.backward called before forward.")
        return bce_with_logits_backward(self.cache)
