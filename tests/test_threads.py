import numpy as np
import pytest

from npsiamese import threads
from npsiamese._checks import NonFiniteError, check_array

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads():
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_training_threads_puts_blas_on_one_thread_and_restores_it(monkeypatch):
    monkeypatch.delenv("NPSIAMESE_BLAS_THREADS", raising=False)
    before = blas_threads()
    with threads.training_threads():
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before


def test_blas_threads_setting(monkeypatch):
    monkeypatch.setenv("NPSIAMESE_BLAS_THREADS", "0")
    assert threads.training_blas_threads() is None  # leave BLAS alone
    monkeypatch.setenv("NPSIAMESE_BLAS_THREADS", "2")
    assert threads.training_blas_threads() == 2
    monkeypatch.delenv("NPSIAMESE_BLAS_THREADS")
    assert threads.training_blas_threads() == threads.DEFAULT_TRAINING_BLAS_THREADS == 1


def test_finite_check_fast_path_keeps_its_answers():
    """The sum-first finite check rejects NaN/inf but accepts a finite array whose sum overflows."""
    huge = np.full(8, 3e38, np.float32)  # its float32 sum is inf
    assert check_array(huge, "t") is huge
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros(5, np.float32)
        x[3] = bad
        with pytest.raises(NonFiniteError, match="1 NaN or infinite"):
            check_array(x, "t")


@pytest.mark.parametrize("nthreads, n", [(1, 5), (2, 5), (3, 7), (4, 2)])
def test_parallel_ranges_covers_every_item_once_in_order(monkeypatch, nthreads, n):
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: nthreads)
    seen = threads.parallel_ranges(lambda lo, hi: list(range(lo, hi)), n)
    assert len(seen) == min(nthreads, n) and all(seen)  # no empty slices
    assert [i for part in seen for i in part] == list(range(n))


def test_parallel_ranges_runs_on_several_threads_with_one_blas_thread(monkeypatch):
    import threading
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    names = threads.parallel_ranges(lambda lo, hi: (threading.current_thread().name, blas_threads()), 2)
    assert names[0][0] != names[1][0]
    assert all(n == 1 for _, counts in names for n in counts)


def test_parallel_ranges_passes_on_a_workers_error(monkeypatch):
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)

    def fails_in_second_half(lo, hi):
        if lo > 0:
            raise ValueError("second half")
        return lo

    with pytest.raises(ValueError, match="second half"):
        threads.parallel_ranges(fails_in_second_half, 4)
