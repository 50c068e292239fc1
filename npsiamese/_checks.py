"""Input validation shared by every public layer and model call.

Every check raises an error that names the caller (``where``), the argument,
what was expected, what was given and what to do about it, so that a learner
never has to decode a NumPy broadcast traceback.
"""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class NonFiniteError(ValueError):
    """An array holds NaN or infinity (bad data, or training that diverged)."""


def check_array(x, where, name="x", ndim=None, dtype=None, shape=None, finite=True):
    """Validate one array argument and return it unchanged.

    Parameters
    ----------
    x : object
        The value to check.
    where : str
        The layer or function being called, e.g. ``"Conv2D.forward"``.
    name : str
        The argument name, e.g. ``"x"`` or ``"dout"``.
    ndim : int, optional
        Required number of dimensions.
    dtype : numpy dtype or None
        Required dtype. ``None`` means "float32 or float64".
    shape : tuple, optional
        Required shape; ``None`` entries match any size.
    finite : bool
        Reject NaN and infinity.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{where}: {name} must be a numpy.ndarray, got {type(x).__name__}. "
            f"Convert it with np.asarray({name}, dtype=np.float32)."
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(
            f"{where}: {name} must have {ndim} dimensions{_shape_hint(shape)}, "
            f"got {x.ndim} (shape {x.shape})."
        )
    if dtype is None:
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{where}: {name} must be float32 or float64, got {x.dtype}. "
                f"Convert it with {name}.astype(np.float32)."
            )
    elif x.dtype != np.dtype(dtype):
        raise TypeError(
            f"{where}: {name} must have dtype {np.dtype(dtype)} (the layer's dtype), "
            f"got {x.dtype}. Convert it with {name}.astype(np.{np.dtype(dtype).name})."
        )
    if shape is not None:
        if len(shape) != x.ndim or any(s is not None and s != g for s, g in zip(shape, x.shape)):
            raise ValueError(
                f"{where}: {name} must have shape {_fmt_shape(shape)}, got {x.shape}."
            )
    if not x.flags.c_contiguous:
        raise ValueError(
            f"{where}: {name} must be C-contiguous (got a strided view of shape {x.shape}). "
            f"Pass np.ascontiguousarray({name})."
        )
    # NaN and inf survive a sum, so one pass without a temporary array clears
    # almost every array; only a non-finite sum (which a huge but finite array
    # can also give, by overflow) needs the exact element-wise test.
    if finite and not _sum_is_finite(x) and not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise NonFiniteError(
            f"{where}: {name} contains {bad} NaN or infinite value(s); "
            f"check the data or lower the learning rate."
        )
    return x


def _sum_is_finite(x):
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow only sends us to the exact test
        return bool(np.isfinite(x.sum()))


def check_positive_int(value, where, name, minimum=1):
    """Validate an integer hyper-parameter such as a stride or a channel count."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}.")
    return int(value)


def pair(value, where, name, minimum=1):
    """Turn ``k`` or ``(kh, kw)`` into a validated ``(kh, kw)`` tuple of ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: {name} must be an int or a pair (h, w), got {value!r}.")
        return (check_positive_int(value[0], where, name, minimum),
                check_positive_int(value[1], where, name, minimum))
    v = check_positive_int(value, where, name, minimum)
    return (v, v)


def _fmt_shape(shape):
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


def _shape_hint(shape):
    return f" {_fmt_shape(shape)}" if shape is not None else ""
