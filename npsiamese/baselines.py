"""Classic one-shot baselines: nearest neighbour on pixels, modified Hausdorff distance.

Both are *scorers* (see :mod:`npsiamese.oneshot`): ``score(queries, support)``
returns a (T, W) similarity, higher = more alike, so they plug into the same
evaluation as a trained network.

Modified Hausdorff distance (Dubuisson & Jain, 1994) between two point sets::

    d(a, B) = min_{b in B} ||a - b||
    MHD(A, B) = max( mean_{a in A} d(a, B),  mean_{b in B} d(b, A) )

As in Lake's ``demo_classification`` (published error 38.8% on the 20 runs),
the point sets are the (row, column) coordinates of the ink pixels, each set
centred on its own centroid, so a shifted drawing costs nothing.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._checks import check_array

_FAR = 1e30  # finite "infinity": starting value for minima, keeps fastmath's no-inf promise


def ink_points(image, threshold=0.5):
    """Centred coordinates of the ink pixels of one image.

    Parameters
    ----------
    image : numpy.ndarray, shape (S, S)
        Ink = 1. A pixel is ink when its value is ``>= threshold``.

    Returns
    -------
    numpy.ndarray, shape (n_ink, 2), float64
        ``(row, col)`` minus their mean (empty when there is no ink).
    """
    points = np.argwhere(image >= threshold).astype(np.float64)
    return points - points.mean(axis=0) if len(points) else points


def modified_hausdorff(a, b):
    """MHD between two point sets ``a`` (n, 2) and ``b`` (m, 2), readable NumPy version.

    Returns ``inf`` when exactly one set is empty and 0 when both are.
    """
    if len(a) == 0 or len(b) == 0:
        return 0.0 if len(a) == len(b) else np.inf
    dist = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))     # (n, m) pairwise distances
    return max(dist.min(axis=1).mean(), dist.min(axis=0).mean())


def _packed_points(images, threshold):
    """All centred ink points of a stack, concatenated: rows, cols (float32) and offsets (n+1,)."""
    sets = [ink_points(im, threshold) for im in images]
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in sets])
    points = np.concatenate(sets) if offsets[-1] else np.zeros((0, 2))
    return (np.ascontiguousarray(points[:, 0], dtype=np.float32),
            np.ascontiguousarray(points[:, 1], dtype=np.float32), offsets)


# fastmath=True: coordinates are finite and _FAR replaces inf, so the no-NaN/no-inf promise holds, and
# it lets LLVM vectorise the running minima. cache=True: no recompile in a new process.
@njit(cache=True, fastmath=True)
def _mean_nearest(a_row, a_col, b_row, b_col, nearest):
    """Directed term of :func:`mhd_matrix`: mean over a in A of min over b in B of ||a - b||.

    The loop over A is innermost so that every step is an element-wise
    running minimum (``nearest[i]``, vectorised) rather than a reduction.
    """
    nearest[:] = _FAR
    for j in range(b_row.size):
        for i in range(a_row.size):
            dr = a_row[i] - b_row[j]
            dc = a_col[i] - b_col[j]
            nearest[i] = min(nearest[i], dr * dr + dc * dc)   # squared distances; sqrt once below
    total = 0.0
    for i in range(a_row.size):
        total += np.sqrt(nearest[i])
    return total / a_row.size


# parallel over (query, support) pairs: each writes its own out cell. cache and fastmath as above.
@njit(parallel=True, cache=True, fastmath=True)
def _mhd_kernel(q_row, q_col, q_off, s_row, s_col, s_off, out):
    """All-pairs kernel for :func:`mhd_matrix`; images ``t`` and ``w`` own points ``off[k]:off[k+1]``."""
    n_query, n_support = out.shape
    for pair in prange(n_query * n_support):
        t = pair // n_support
        w = pair % n_support
        a0, a1 = q_off[t], q_off[t + 1]
        b0, b1 = s_off[w], s_off[w + 1]
        if a1 == a0 or b1 == b0:                     # no ink: mhd_matrix fills these cells
            out[t, w] = 0.0
            continue
        scratch = np.empty(max(a1 - a0, b1 - b0), dtype=np.float32)
        a_to_b = _mean_nearest(q_row[a0:a1], q_col[a0:a1], s_row[b0:b1], s_col[b0:b1], scratch)
        b_to_a = _mean_nearest(s_row[b0:b1], s_col[b0:b1], q_row[a0:a1], q_col[a0:a1], scratch)
        out[t, w] = max(a_to_b, b_to_a)


def mhd_matrix(queries, support, threshold=0.5):
    """Modified Hausdorff distance between every query and every support image.

    Parameters
    ----------
    queries : numpy.ndarray, shape (T, S, S), float32
    support : numpy.ndarray, shape (W, S, S), float32
        Ink = 1; ink points are pixels ``>= threshold``, centred per image.

    Returns
    -------
    numpy.ndarray, shape (T, W), float64
        Distances in pixels of the given image size (computed in float32).
    """
    check_array(queries, "mhd_matrix", "queries", ndim=3)
    check_array(support, "mhd_matrix", "support", ndim=3, shape=(None,) + queries.shape[1:])
    q_row, q_col, q_off = _packed_points(queries, threshold)
    s_row, s_col, s_off = _packed_points(support, threshold)
    out = np.empty((queries.shape[0], support.shape[0]))
    _mhd_kernel(q_row, q_col, q_off, s_row, s_col, s_off, out)
    # an image without ink is infinitely far from one with ink (and 0 from another blank one)
    q_empty, s_empty = np.diff(q_off) == 0, np.diff(s_off) == 0
    out[q_empty[:, None] != s_empty[None, :]] = np.inf
    return out


class PixelScorer:
    """1-nearest neighbour on raw pixels: ``score = -||q - s||_2``."""

    name = "pixel"

    def score(self, queries, support):
        """(T, S, S), (W, S, S) -> (T, W) negative Euclidean distances."""
        check_array(queries, "PixelScorer.score", "queries", ndim=3)
        check_array(support, "PixelScorer.score", "support", ndim=3, shape=(None,) + queries.shape[1:])
        q = queries.reshape(len(queries), -1).astype(np.float64)
        s = support.reshape(len(support), -1).astype(np.float64)
        # ||q - s||^2 = ||q||^2 + ||s||^2 - 2 q.s   (one matrix product for all pairs)
        sq = (q * q).sum(1)[:, None] + (s * s).sum(1)[None, :] - 2.0 * (q @ s.T)
        return -np.sqrt(np.maximum(sq, 0.0))


class MHDScorer:
    """Modified Hausdorff distance on centred ink points: ``score = -MHD``."""

    name = "mhd"

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def score(self, queries, support):
        """(T, S, S), (W, S, S) -> (T, W) negative MHD (higher = more similar)."""
        return -mhd_matrix(queries, support, self.threshold)


BASELINES = {"pixel": PixelScorer, "mhd": MHDScorer}


def get_baseline(name):
    """A scorer by name: ``"pixel"`` or ``"mhd"``."""
    if name not in BASELINES:
        raise ValueError(f"get_baseline: unknown baseline {name!r}; choose one of {sorted(BASELINES)}.")
    return BASELINES[name]()
