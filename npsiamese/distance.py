"""The L1 join of the two twins: d = |h1 - h2| component-wise."""
from __future__ import annotations

import numpy as np

from ._checks import check_array
from .base import Layer


def l1_forward(h1, h2):
    """d = |h1 - h2|, element-wise.

    Parameters
    ----------
    h1, h2 : (N, D) arrays, the embeddings of the two inputs of each pair.

    Returns
    -------
    out : (N, D) array
    cache : sign(h1 - h2), an (N, D) array of -1, 0 or +1
    """
    diff = h1 - h2
    return np.abs(diff), np.sign(diff)


def l1_backward(dout, cache):
    """d|h1 - h2| / dh1 = sign(h1 - h2) and / dh2 = -sign(h1 - h2).

    Returns ``(dh1, dh2)``, each (N, D). At h1 == h2 the subgradient 0 is used.
    """
    sign = cache
    dh1 = dout * sign
    return dh1, -dh1


class L1Distance(Layer):
    """Component-wise L1 distance between two (N, D) embeddings. No parameters."""

    def forward(self, h1, h2):
        check_array(h1, "L1Distance.forward", "h1", ndim=2, dtype=self.dtype, finite=self.check_finite)
        check_array(h2, "L1Distance.forward", "h2", ndim=2, dtype=self.dtype, shape=h1.shape,
                    finite=self.check_finite)
        out, self.cache = l1_forward(h1, h2)
        return out

    def backward(self, dout):
        sign = self._need_cache()
        check_array(dout, "L1Distance.backward", "dout", ndim=2, dtype=self.dtype, shape=sign.shape,
                    finite=self.check_finite)
        return l1_backward(dout, sign)
