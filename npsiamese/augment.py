"""Koch et al. (2015) affine distortions, by inverse mapping with bilinear interpolation.

Each image gets its own random affine map ``T`` built from four components,
each switched on with probability 0.5 (off = identity):

- rotation ``theta`` uniform in [-10, 10] degrees,
- shear ``(shear_x, shear_y)`` each uniform in [-0.3, 0.3],
- scale ``(scale_x, scale_y)`` each uniform in [0.8, 1.2],
- translation ``(shift_x, shift_y)`` each uniform in [-2, 2] pixels at 105 px
  (``2 * S / 105`` pixels for an ``S``-pixel image).

With coordinates ``p = (x, y) = (column, row)`` measured from the image centre
``c = (S - 1) / 2`` (``y`` points down), the forward map is

    p_out = R(theta) @ Shear @ Scale @ p_in + shift,
    R(theta) = [[cos, sin], [-sin, cos]]  (counter-clockwise on screen),
    Shear = [[1, shear_x], [shear_y, 1]],  Scale = diag(scale_x, scale_y).

Warping samples the input where each output pixel comes from,
``p_in = A^-1 (p_out - shift)``, and interpolates bilinearly between the four
surrounding pixels; outside the image counts as background (0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ._checks import check_array

MAX_ROTATION = 10.0   # degrees
MAX_SHEAR = 0.3
SCALE_RANGE = (0.8, 1.2)
MAX_SHIFT_105 = 2.0   # pixels at the native 105 px; scaled with the image size


@dataclass
class AffineParams:
    """Per-image affine parameters; every field has shape (N,), float64.

    ``rotation`` in degrees (counter-clockwise on screen), ``shift_x``/``shift_y``
    in pixels of the image being warped (``x`` right, ``y`` down).
    """

    rotation: np.ndarray
    shear_x: np.ndarray
    shear_y: np.ndarray
    scale_x: np.ndarray
    scale_y: np.ndarray
    shift_x: np.ndarray
    shift_y: np.ndarray

    @classmethod
    def identity(cls, n):
        """Parameters that leave ``n`` images unchanged."""
        zero, one = np.zeros(n), np.ones(n)
        return cls(zero, zero.copy(), zero.copy(), one, one.copy(), zero.copy(), zero.copy())

    def __len__(self):
        return np.shape(self.rotation)[0]


def sample_affine_params(n, rng, image_size, p=0.5):
    """Draw Koch's random distortion for each of ``n`` images independently.

    Parameters
    ----------
    n : int
    rng : numpy.random.Generator
    image_size : int
        ``S``; the translation range is ``2 * S / 105`` pixels.
    p : float
        Probability that each component (rotation, shear, scale, translation)
        is applied; Koch et al. use 0.5.
    """
    shift = MAX_SHIFT_105 * image_size / 105.0
    (rotation,) = _component(rng, n, p, -MAX_ROTATION, MAX_ROTATION, 0.0, count=1)
    shear_x, shear_y = _component(rng, n, p, -MAX_SHEAR, MAX_SHEAR, 0.0, count=2)
    scale_x, scale_y = _component(rng, n, p, *SCALE_RANGE, 1.0, count=2)
    shift_x, shift_y = _component(rng, n, p, -shift, shift, 0.0, count=2)
    return AffineParams(rotation, shear_x, shear_y, scale_x, scale_y, shift_x, shift_y)


def _component(rng, n, p, low, high, neutral, count):
    """``count`` arrays (n,) uniform in [low, high]; ``neutral`` where the component is off.

    One on/off switch per image and component, shared by its x and y values.
    """
    on = rng.random(n) < p
    return [np.where(on, v, neutral) for v in rng.uniform(low, high, size=(count, n))]


def affine_matrices(params, image_size):
    """Forward maps in absolute pixel coordinates, shape (N, 2, 3), float64.

    ``[x_out, y_out] = M[:, :, :2] @ [x_in, y_in] + M[:, :, 2]`` with
    ``M[:, :, :2] = A = R @ Shear @ Scale`` and offset ``c + shift - A @ c``
    so that the centre ``c = (S - 1) / 2`` maps to ``c + shift``.
    """
    theta = np.deg2rad(np.asarray(params.rotation, dtype=np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    n = theta.shape[0]
    rot = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)          # (N, 2, 2)
    shear = np.stack([np.stack([np.ones(n), params.shear_x], -1),
                      np.stack([params.shear_y, np.ones(n)], -1)], 1)
    scale = np.zeros((n, 2, 2))
    scale[:, 0, 0], scale[:, 1, 1] = params.scale_x, params.scale_y
    a = rot @ shear @ scale
    c = (image_size - 1) / 2.0
    centre = np.array([c, c])
    offset = centre + np.stack([params.shift_x, params.shift_y], -1) - a @ centre     # (N, 2)
    return np.concatenate([a, offset[:, :, None]], axis=2)


def invert_affine(matrices):
    """Inverse maps (N, 2, 3): ``p_in = A^-1 @ p_out - A^-1 @ offset`` (2x2 inverse in closed form)."""
    a, b, t = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, :, 2]
    c, d = matrices[:, 1, 0], matrices[:, 1, 1]
    det = a * d - b * c
    if np.any(np.abs(det) < 1e-12):
        raise ValueError("invert_affine: a matrix is singular (zero scale?); it maps the image onto a line.")
    inv = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], 1) / det[:, None, None]
    return np.concatenate([inv, -(inv @ t[:, :, None])], axis=2)


# parallel over images (disjoint output planes). cache=True: skip the ~1 s compile in every new
# process. fastmath=False: this gather is memory-bound, and exact arithmetic keeps the identity
# map bit-exact (weights 1 and 0).
@njit(parallel=True, cache=True, fastmath=False)
def _warp_kernel(images, inverse, out):
    """Bilinear inverse-mapping kernel for :func:`warp_affine`."""
    n_img, height, width = images.shape
    for n in prange(n_img):
        a, b, tx = inverse[n, 0, 0], inverse[n, 0, 1], inverse[n, 0, 2]
        c, d, ty = inverse[n, 1, 0], inverse[n, 1, 1], inverse[n, 1, 2]
        for row in range(height):
            for col in range(width):
                x = a * col + b * row + tx          # where this output pixel comes from
                y = c * col + d * row + ty
                x0 = np.floor(x)
                y0 = np.floor(y)
                fx = x - x0                          # bilinear weights
                fy = y - y0
                ix = int(x0)
                iy = int(y0)
                value = 0.0
                if 0 <= iy < height:
                    if 0 <= ix < width:
                        value += (1.0 - fy) * (1.0 - fx) * images[n, iy, ix]
                    if 0 <= ix + 1 < width:
                        value += (1.0 - fy) * fx * images[n, iy, ix + 1]
                if 0 <= iy + 1 < height:
                    if 0 <= ix < width:
                        value += fy * (1.0 - fx) * images[n, iy + 1, ix]
                    if 0 <= ix + 1 < width:
                        value += fy * fx * images[n, iy + 1, ix + 1]
                out[n, row, col] = value


def warp_affine(images, matrices):
    """Apply one forward affine map per image (Numba kernel).

    Parameters
    ----------
    images : numpy.ndarray, shape (N, S, S), float32
    matrices : numpy.ndarray, shape (N, 2, 3)
        Forward maps from :func:`affine_matrices`.

    Returns
    -------
    numpy.ndarray, shape (N, S, S), float32
    """
    check_array(images, "warp_affine", "images", ndim=3, dtype=np.float32)
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.shape != (images.shape[0], 2, 3):
        raise ValueError(f"warp_affine: matrices must have shape ({images.shape[0]}, 2, 3) "
                         f"(one per image), got {matrices.shape}.")
    out = np.empty_like(images)
    _warp_kernel(images, np.ascontiguousarray(invert_affine(matrices)), out)
    return out


def warp_affine_reference(images, matrices):
    """Readable NumPy version of :func:`warp_affine` (used by the tests)."""
    n_img, height, width = images.shape
    inverse = invert_affine(np.asarray(matrices, dtype=np.float64))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    grid = np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)])            # (3, S*S): x, y, 1
    out = np.zeros(images.shape, dtype=np.float64)
    for n in range(n_img):
        x, y = inverse[n] @ grid                                                  # source coordinates
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - x0, y - y0
        for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                          (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            pixel = np.zeros(x.size)
            pixel[inside] = images[n, yy[inside], xx[inside]]
            out[n] += (w * pixel).reshape(height, width)
    return out.astype(images.dtype)


def distort(images, params):
    """Warp ``images`` (N, S, S) float32 with explicit :class:`AffineParams` (N entries)."""
    if len(params) != images.shape[0]:
        raise ValueError(f"distort: params hold {len(params)} transforms for {images.shape[0]} images.")
    return warp_affine(images, affine_matrices(params, images.shape[-1]))


def distort_batch(images, rng, p=0.5):
    """Koch's random affine distortion, drawn independently for every image.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, S, S), float32
    rng : numpy.random.Generator
    p : float
        Probability of each of the four components.

    Returns
    -------
    numpy.ndarray, shape (N, S, S), float32
    """
    check_array(images, "distort_batch", "images", ndim=3, dtype=np.float32)
    return distort(images, sample_affine_params(images.shape[0], rng, images.shape[-1], p))


def dihedral(images, t):
    """Apply the symmetry ``t`` (0..7) of the square to images (N, S, S): t % 4 quarter turns, mirrored if t >= 4.

    ``t`` is an int, or an int array (N,) with one symmetry per image.
    Returns a new contiguous array.
    """
    if np.ndim(t) == 0:  # one symmetry for all: rotate the whole stack at once
        if not 0 <= int(t) <= 7:
            raise ValueError(f"dihedral: t must be in 0..7, got {t}.")
        out = np.rot90(images, k=int(t) % 4, axes=(1, 2))
        return np.ascontiguousarray(out[:, :, ::-1] if t >= 4 else out)
    t = np.broadcast_to(np.asarray(t), (images.shape[0],))
    if t.size and (t.min() < 0 or t.max() > 7):
        raise ValueError(f"dihedral: t must be in 0..7, got values in [{t.min()}, {t.max()}].")
    out = np.empty_like(images)
    for n in range(images.shape[0]):
        img = np.rot90(images[n], k=int(t[n]) % 4)
        out[n] = img[:, ::-1] if t[n] >= 4 else img
    return out
