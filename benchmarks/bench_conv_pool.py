"""Time Conv2D and MaxPool2D forward+backward on the layer shapes of the three towers.

    python benchmarks/bench_conv_pool.py             # npsiamese kernels
    python benchmarks/bench_conv_pool.py --torch     # the same layers in PyTorch (CPU)
    python benchmarks/bench_conv_pool.py --reference # the loop references (slow)

Prints the median and the minimum of several runs in milliseconds (the machine
may be shared, so look at both). Run the npsiamese and the PyTorch versions as
separate processes, one after the other, with the same number of threads,
e.g. ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` for both.

Threads. The convolutions spend most of their time in NumPy's matrix multiply
(OpenBLAS, with its own thread pool) and the rest in Numba kernels (Numba's
pool). After each multiply, OpenBLAS's workers keep spinning for a while and
slow down the Numba kernel that follows; ``OPENBLAS_THREAD_TIMEOUT=4`` (set
before NumPy is imported) makes them sleep at once and the conv layers 10-35 %
faster. On a machine busy with other work, multi-threaded OpenBLAS slows down
badly (2-10x); ``OPENBLAS_NUM_THREADS=1`` is then the faster setting.
"""
import argparse
import os
import time

import numpy as np

# (name, N, C, H, F, kernel, pad, needs_input_grad); square inputs and kernels, stride 1.
# Batch sizes: 64 images for the 105 px nets, 128 for the small compact net.
LAYERS = [
    ("seed  conv 1->64 3x3 @105", 64, 1, 105, 64, 3, 0, False),
    ("compact conv 1->32 3x3p1 @52", 128, 1, 52, 32, 3, 1, False),
    ("compact conv 32->64 3x3p1 @26", 128, 32, 26, 64, 3, 1, True),
    ("compact conv 64->64 3x3p1 @13", 128, 64, 13, 64, 3, 1, True),
    ("compact conv 64->64 3x3p1 @6", 128, 64, 6, 64, 3, 1, True),
    ("koch  conv 1->64 10x10 @105", 64, 1, 105, 64, 10, 0, False),
    ("koch  conv 64->128 7x7 @48", 64, 64, 48, 128, 7, 0, True),
    ("koch  conv 128->128 4x4 @21", 64, 128, 21, 128, 4, 0, True),
    ("koch  conv 128->256 4x4 @9", 64, 128, 9, 256, 4, 0, True),
]


def timeit(fn, repeat):
    fn()  # warm-up (and JIT compile)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * np.median(times), 1e3 * min(times)


def numpy_cases(reference):
    from npsiamese.conv import conv2d_backward, conv2d_forward
    from npsiamese.pool import maxpool2d_backward, maxpool2d_forward
    from npsiamese import reference as ref

    for name, N, C, H, F, k, pad, needs_dx in LAYERS:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, C, H, H), dtype=np.float32)
        w = 0.1 * rng.standard_normal((F, C, k, k), dtype=np.float32)
        b = np.zeros(F, np.float32)
        out, cache = conv2d_forward(x, w, b, 1, pad)
        dout = rng.standard_normal(out.shape, dtype=np.float32)
        pooled, pool_cache = maxpool2d_forward(out, 2)
        dpooled = np.ones_like(pooled)
        if reference:
            def conv():
                ref.conv2d_forward_reference(x, w, b, 1, pad)
                ref.conv2d_backward_reference(dout, x, w, 1, pad)

            def pool():
                ref.maxpool2d_forward_reference(out, 2)
                ref.maxpool2d_backward_reference(dpooled, out, 2)
        else:
            def conv():
                _, c = conv2d_forward(x, w, b, 1, pad)
                conv2d_backward(dout, c, needs_input_grad=needs_dx)

            def pool():
                _, c = maxpool2d_forward(out, 2)
                maxpool2d_backward(dpooled, c)
        yield name, N, needs_dx, conv, pool


def torch_cases():
    import torch

    for name, N, C, H, F, k, pad, needs_dx in LAYERS:
        x = torch.randn(N, C, H, H, requires_grad=needs_dx)
        layer = torch.nn.Conv2d(C, F, k, padding=pad)
        dout = torch.randn_like(layer(x))
        out = torch.randn_like(dout, requires_grad=True)
        dpooled = torch.ones_like(torch.nn.functional.max_pool2d(out, 2))

        def conv():
            layer.zero_grad()
            layer(x).backward(dout)

        def pool():
            torch.nn.functional.max_pool2d(out, 2).backward(dpooled)
        yield name, N, needs_dx, conv, pool


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="time PyTorch instead")
    parser.add_argument("--reference", action="store_true", help="time the loop references instead")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", default="", help="run only layers whose name contains this")
    args = parser.parse_args()
    if args.torch:
        import torch
        torch.set_num_threads(int(os.environ.get("NUMBA_NUM_THREADS", 0)) or torch.get_num_threads())
        cases, label = torch_cases(), f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    else:
        import numba
        cases = numpy_cases(args.reference)
        label = ("reference" if args.reference else "npsiamese") + f", {numba.get_num_threads()} threads"
    print(f"# {label}; forward+backward, median / min ms")
    for name, N, needs_dx, conv, pool in cases:
        if args.only not in name:
            continue
        conv_med, conv_min = timeit(conv, args.repeat)
        pool_med, pool_min = timeit(pool, args.repeat)
        print(f"{name:32s} N={N:3d} dx={'y' if needs_dx else 'n'}  conv {conv_med:8.1f} / {conv_min:8.1f}"
              f"   pool 2x2 {pool_med:7.1f} / {pool_min:7.1f}", flush=True)


if __name__ == "__main__":
    main()
