"""Who gets the CPU cores during a training step: Numba's loops or BLAS's matrix multiplies.

A training step alternates between Numba kernels (im2col, col2im, pooling),
which run on Numba's thread pool, and matrix multiplies, which run on the
BLAS library's own pool (OpenBLAS, under NumPy). Two pools on the same few
cores only work if each one lets go of the cores when it is done. Numba's
"workqueue" pool does (see ``npsiamese/__init__.py``); OpenBLAS's threads
instead keep spinning for a while after each multiply, waiting for the next
one. On a busy machine those spinning threads steal the cores from Numba's
threads and from every other process, and a step gets 2-5x slower.

So during training steps BLAS runs on one thread (the calling one, which
never spins) and the parallelism comes from Numba, over the images of the
batch. Measured on 2 busy cores, median ms per step, in one process beside PyTorch
(npsiamese/PyTorch): BLAS 1 + Numba 2 threads 0.53-0.97x; BLAS 2 + Numba 2
0.69-1.58x; BLAS 2 + Numba 1 0.76-1.75x (seed and compact nets, 32 and 128 pairs).

``training_threads()`` is the context manager that
``SiameseNetwork.pairs_loss_and_grad`` (every training step) and
``SiameseNetwork.embed`` run in; BLAS gets its threads back on the way out.
It needs the small ``threadpoolctl`` package and does nothing without it. Set ``NPSIAMESE_BLAS_THREADS`` to
another number (or to 0 for "leave BLAS alone") to try other settings.
"""
from __future__ import annotations

import contextlib
import os

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - threadpoolctl is a dependency, but stay usable without it
    ThreadpoolController = None

DEFAULT_TRAINING_BLAS_THREADS = 1
_controller = None


def training_blas_threads():
    """BLAS threads during training steps: ``$NPSIAMESE_BLAS_THREADS``, else 1; None = not limited."""
    value = os.environ.get("NPSIAMESE_BLAS_THREADS", "").strip()
    n = int(value) if value else DEFAULT_TRAINING_BLAS_THREADS
    return n if n > 0 and ThreadpoolController is not None else None


def blas_limit(n):
    """Context manager: at most ``n`` BLAS threads inside it (``None``: no change)."""
    global _controller
    if n is None or ThreadpoolController is None:
        return contextlib.nullcontext()
    if _controller is None:  # finding the loaded BLAS libraries takes a few ms: do it once
        _controller = ThreadpoolController()
    return _controller.limit(limits=n, user_api="blas")


def training_threads():
    """Context manager for training steps: BLAS limited to ``training_blas_threads()``."""
    return blas_limit(training_blas_threads())
