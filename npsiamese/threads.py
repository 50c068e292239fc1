"""Who gets the CPU cores during a training step: Numba's loops or BLAS's matrix multiplies.

A training step alternates between Numba kernels (im2col, col2im, pooling)
and matrix multiplies, which run in the BLAS library (OpenBLAS, under
NumPy). BLAS has its own thread pool, and its threads keep spinning for a
while after each multiply, waiting for the next one; on a busy machine those
spinning threads steal the cores from Numba's threads and from every other
process, and a step gets 2-5x slower. Measured on 2 busy cores, median ms per
step beside PyTorch (npsiamese/PyTorch): BLAS 1 + Numba 2 threads
0.53-0.97x; BLAS 2 + Numba 2 0.69-1.58x; BLAS 2 + Numba 1 0.76-1.75x.

So BLAS never gets more than one thread inside a training step, and the
parallelism comes from splitting the batch's images between threads:

- ``parallel_ranges(fn, n)`` gives each of ``numba.get_num_threads()``
  threads a contiguous slice of the n images. The convolutions use it: each
  thread runs its own im2col kernel and its own one-thread matrix multiplies
  (both release the GIL, so the threads really run at the same time).
- Element-wise kernels such as pooling use Numba's ``prange`` over the images
  instead, on Numba's "workqueue" pool (chosen in ``npsiamese/__init__.py``
  because its threads sleep when idle instead of spinning).

``training_threads()`` is the context manager that
``SiameseNetwork.pairs_loss_and_grad`` (every training step) and
``SiameseNetwork.embed`` run in: BLAS on one thread, given its threads back on
the way out. It needs the small ``threadpoolctl`` package and does nothing
without it. Set ``NPSIAMESE_BLAS_THREADS`` to another number (or to 0 for
"leave BLAS alone") to try other settings.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor, wait

import numba
import numpy as np

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - threadpoolctl is a dependency, but stay usable without it
    ThreadpoolController = None

DEFAULT_TRAINING_BLAS_THREADS = 1
_controller = None
_executor, _executor_size = None, 0  # worker threads of parallel_ranges, made on first use


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


def parallel_ranges(fn, n):
    """Call ``fn(lo, hi)`` on disjoint slices of ``range(n)``, one per thread; return the results in order.

    The slices are contiguous and as equal as possible, one for each of
    ``numba.get_num_threads()`` threads (set ``NUMBA_NUM_THREADS`` to change
    it); the calling thread does the first. ``fn`` must release the GIL for
    this to run in parallel: NumPy's matrix multiplies and ``nogil`` Numba
    kernels do. Inside, BLAS is limited to one thread, so that T slices of
    work use T cores rather than T times BLAS's threads.
    """
    global _executor, _executor_size
    T = max(1, min(numba.get_num_threads(), n))
    if T == 1:
        return [fn(0, n)]
    bounds = [n * t // T for t in range(T + 1)]
    if _executor_size < T - 1:  # (a pool with more workers than needed serves as well)
        _executor = ThreadPoolExecutor(max_workers=T - 1, thread_name_prefix="npsiamese")
        _executor_size = T - 1
    errors = np.geterr()  # NumPy's floating-point error settings are per thread: pass them on

    def in_worker(lo, hi):
        with np.errstate(**errors):
            return fn(lo, hi)

    with blas_limit(1):
        futures = [_executor.submit(in_worker, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
        try:
            first = fn(bounds[0], bounds[1])
        finally:  # never leave a worker writing into arrays the caller may free or reuse
            wait(futures)
    return [first] + [f.result() for f in futures]  # re-raises a worker's exception
