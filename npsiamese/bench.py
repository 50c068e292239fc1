"""``npsiamese bench``: how fast is a training step, and where does the time go?

    npsiamese bench                  training steps of the seed and compact nets, PyTorch beside them
    npsiamese bench --koch           also the Koch net at 105 px (slow)
    npsiamese bench --reference      also the loop references of conv and pool (slow)
    npsiamese bench --json           everything as one JSON object on stdout
    python -m npsiamese.bench        the same

A *training step* is what ``Trainer`` does once per batch of pairs: both
towers (one pass over the stacked batch ``[x1; x2]``), the L1 join, the
Dense(1) head, the loss, backward, and an SGD update. When PyTorch is
importable the identical network (same layers, shapes and starting weights;
L1 + Linear(1) + BCEWithLogits; SGD) is timed in the same process, its steps
alternating with ours so that a change in the machine's load hits both alike.

Also measured: forward and backward time per layer, the conv layers' GFLOP/s
next to the float32 ``numpy.matmul`` rate on 2048x2048 in the same run, JIT
compile time on a cold cache and start-up time on a warm one (fresh
processes), peak memory of a batch-128 seed-net step (fresh processes), the
cost of distorting a batch, and loading Omniglot.

Timings on a shared machine are noisy: medians are printed with min-max, and
the load average before and after. Progress goes to stderr, results to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import threads
from .activations import ReLU, Sigmoid
from .conv import Conv2D
from .dense import Dense, Flatten
from .network import SiameseNetwork
from .optim import SGD
from .pool import MaxPool2D

# (net, image size, pairs per batch): issue 6's cases; koch only with --koch.
CASES = [("seed", 105, 32), ("seed", 105, 128), ("compact", 35, 32), ("compact", 35, 128)]
KOCH_CASE = ("koch", 105, 32)
# --quick (for the tests): tiny images and batches, everything else the same.
QUICK_CASES = [("seed", 28, 4), ("compact", 35, 4)]
QUICK_KOCH_CASE = ("koch", 105, 2)
LR, MOMENTUM = 1e-3, 0.9


def _note(msg):
    print(msg, file=sys.stderr, flush=True)


def _stats(seconds):
    ms = 1e3 * np.asarray(seconds)
    return {"median": float(np.median(ms)), "min": float(ms.min()), "max": float(ms.max())}


def _time_calls(fns, repeat, warmup=1):
    """Call every function of ``fns`` ``warmup + repeat`` times, round-robin; return their times (s).

    Round-robin rather than one after the other: on a shared machine a burst
    of load then slows every contender, not just one of them.
    """
    times = [[] for _ in fns]
    for r in range(warmup + repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times[k].append(time.perf_counter() - t0)
    return times


def random_batch(image_size, batch, seed=0, dtype=np.float32):
    """x1, x2 (batch, 1, S, S) in [0, 1) and labels y (batch,) of 0 and 1."""
    rng = np.random.default_rng(seed)
    x1 = rng.random((batch, 1, image_size, image_size), dtype=np.float32).astype(dtype)
    x2 = rng.random((batch, 1, image_size, image_size), dtype=np.float32).astype(dtype)
    y = (np.arange(batch) % 2).astype(dtype)
    return x1, x2, y


# --------------------------------------------------------------------------- npsiamese
def numpy_step(net, x1, x2, y):
    """A function doing one training step of ``net`` on (x1, x2, y), and returning the loss."""
    opt = SGD(net.named_parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        net.zero_grad()
        loss = net.loss_and_grad(x1, x2, y)
        opt.step()
        return loss
    return step


# --------------------------------------------------------------------------- PyTorch
def torch_network(net):
    """The PyTorch twin of ``net``: ``(tower, head)`` modules with a copy of its weights."""
    import torch
    from torch import nn

    modules = []
    for layer in net.tower:
        if isinstance(layer, Conv2D):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          stride=layer.stride, padding=layer.pad)
        elif isinstance(layer, MaxPool2D):
            m = nn.MaxPool2d(layer.pool_size, stride=layer.stride)
        elif isinstance(layer, Dense):
            m = nn.Linear(layer.in_features, layer.out_features)
        else:
            m = {ReLU: nn.ReLU, Sigmoid: nn.Sigmoid, Flatten: nn.Flatten}[type(layer)]()
        modules.append(m)
        if "w" in layer.params:
            w = layer.params["w"]
            with torch.no_grad():  # Dense keeps w as (in, out), nn.Linear as (out, in)
                m.weight.copy_(torch.from_numpy(w.T.copy() if isinstance(layer, Dense) else w))
                m.bias.copy_(torch.from_numpy(layer.params["b"]))
    head = nn.Linear(net.embedding_dim, 1)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(net.head.params["w"].T.copy()))
        head.bias.copy_(torch.from_numpy(net.head.params["b"]))
    return nn.Sequential(*modules), head


def torch_step(net, x1, x2, y):
    """The same training step as ``numpy_step``, in PyTorch, on a copy of ``net``'s weights."""
    import torch

    tower, head = torch_network(net)
    opt = torch.optim.SGD(list(tower.parameters()) + list(head.parameters()), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    X = torch.from_numpy(np.concatenate([x1, x2]))  # the input needs no gradient
    Y = torch.from_numpy(y)
    N = x1.shape[0]

    def step():
        opt.zero_grad()
        h = tower(X)                                  # both twins in one pass
        s = head((h[:N] - h[N:]).abs())[:, 0]         # L1 join, Dense(1) head
        loss = loss_fn(s, Y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- measurements
def time_cases(cases, repeat, use_torch):
    """Median ms per training step of each case, and PyTorch's beside it."""
    rows = []
    for arch, S, B in cases:
        _note(f"bench: training step, {arch} net at {S} px, {B} pairs ...")
        net = SiameseNetwork(arch, image_size=S, seed=0)
        x1, x2, y = random_batch(S, B)
        fns = [numpy_step(net, x1, x2, y)]
        if use_torch:
            # the first losses agree when both start from the same weights
            loss_np = SiameseNetwork(arch, image_size=S, seed=0).loss_and_grad(x1, x2, y)
            fns.append(torch_step(net, x1, x2, y))
            loss_torch = fns[1]()
        with threads.training_threads():
            times = _time_calls(fns, repeat)
        st = _stats(times[0])
        row = {"net": arch, "image_size": S, "batch": B, "ms_per_step": st["median"],
               "ms_min": st["min"], "ms_max": st["max"], "pairs_per_s": 1e3 * B / st["median"],
               "torch_ms_per_step": None, "ratio": None}
        if use_torch:
            tt = _stats(times[1])
            row.update(torch_ms_per_step=tt["median"], torch_ms_min=tt["min"], torch_ms_max=tt["max"],
                       ratio=st["median"] / tt["median"], first_loss=loss_np, torch_first_loss=loss_torch)
        rows.append(row)
    return rows


def matmul_gflops(n=2048, repeat=5, blas_threads=None):
    """float32 ``numpy.matmul`` rate on n x n matrices, GFLOP/s (2 n^3 flops per product)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    with threads.blas_limit(blas_threads):
        times = _time_calls([lambda: np.matmul(a, b, out=c)], repeat)[0]
    return 2 * n ** 3 / np.median(times) / 1e9


def _conv_flops(layer, x_shape, out_shape):
    """Multiply-adds x 2 of the forward pass; backward does it once for dw and once more for dx."""
    N, F, H_out, W_out = out_shape
    K = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
    forward = 2 * N * F * K * H_out * W_out
    return forward, forward * (2 if layer.needs_input_grad else 1)


def time_layers(arch, S, B, repeat, reference=False, reference_repeat=1):
    """Forward and backward time of every tower layer of ``arch`` on 2B images (both twins)."""
    from . import reference as ref

    _note(f"bench: per-layer times, {arch} net at {S} px, {B} pairs ...")
    net = SiameseNetwork(arch, image_size=S, seed=0)
    x1, x2, _ = random_batch(S, B)
    x = np.concatenate([x1, x2])
    rng = np.random.default_rng(1)
    rows = []
    for i, layer in enumerate(net.tower):
        out = layer.forward(x)
        dout = rng.standard_normal(out.shape, dtype=np.float32)
        if isinstance(layer, MaxPool2D):
            dout = np.abs(dout)  # any values do; positive ones keep the next ReLU's mask busy

        def forward(layer=layer, x=x):
            layer.forward(x)

        def backward(layer=layer, dout=dout):
            layer.backward(dout)
        with threads.training_threads():
            t_fwd, t_bwd = _time_calls([forward, backward], repeat)
        row = {"net": arch, "image_size": S, "batch": B, "index": i, "layer": repr(layer),
               "input_shape": list(x.shape), "output_shape": list(out.shape),
               "forward_ms": _stats(t_fwd)["median"], "backward_ms": _stats(t_bwd)["median"]}
        if isinstance(layer, Conv2D):
            row["algorithm"] = layer.algorithm(x.shape[1:])
            f_fwd, f_bwd = _conv_flops(layer, x.shape, out.shape)
            row["gflops_forward"] = f_fwd / row["forward_ms"] / 1e6
            row["gflops_backward"] = f_bwd / row["backward_ms"] / 1e6
        if reference and isinstance(layer, (Conv2D, MaxPool2D)):
            _note(f"bench:   reference version of layer {i} ...")
            if isinstance(layer, Conv2D):
                w, b = layer.params["w"], layer.params["b"]
                fns = [lambda: ref.conv2d_forward_reference(x, w, b, layer.stride, layer.pad),
                       lambda: ref.conv2d_backward_reference(dout, x, w, layer.stride, layer.pad)]
            else:
                fns = [lambda: ref.maxpool2d_forward_reference(x, layer.pool_size, layer.stride),
                       lambda: ref.maxpool2d_backward_reference(dout, x, layer.pool_size, layer.stride)]
            with threads.training_threads():
                t_ref = _time_calls(fns, reference_repeat, warmup=0)
            row["reference_forward_ms"] = _stats(t_ref[0])["median"]
            row["reference_backward_ms"] = _stats(t_ref[1])["median"]
        rows.append(row)
        x = out
    return rows


_JIT_CHILD = """
import time
t0 = time.perf_counter()
import numpy as np
from npsiamese.network import SiameseNetwork
from npsiamese.optim import SGD
t1 = time.perf_counter()
for arch, S in (("seed", 28), ("compact", 35)):   # every float32 kernel of a training step
    net = SiameseNetwork(arch, image_size=S)
    x = np.zeros((2, 1, S, S), np.float32)
    net.loss_and_grad(x, x, np.array([0.0, 1.0], np.float32))
    SGD(net.named_parameters()).step()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def jit_times():
    """Seconds to import and run a first training step in a fresh process, cold then warm JIT cache."""
    with tempfile.TemporaryDirectory(prefix="npsiamese-jit-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        result = {}
        for kind in ("cold", "warm"):
            _note(f"bench: JIT, {kind} cache (a fresh process) ...")
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _JIT_CHILD], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            total = time.perf_counter() - t0
            result[f"{kind}_import_s"] = float(out[0])
            result[f"{kind}_first_step_s"] = float(out[1])
            result[f"{kind}_total_s"] = total  # includes Python's own start-up
    return result


_MEMORY_CHILD = """
import json, os, resource, sys
import numpy as np
framework, arch, S, B = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from npsiamese.bench import numpy_step, torch_step, random_batch
from npsiamese.network import SiameseNetwork


def status_mb(field):  # Linux: VmRSS (now) or VmHWM (peak) of this process, MiB
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


net = SiameseNetwork(arch, image_size=S, seed=0)
make = numpy_step if framework == "npsiamese" else torch_step
make(net, *random_batch(S, 1))()                # load the kernels / warm up PyTorch on one pair
step = make(net, *random_batch(S, B))
if os.path.exists("/proc/self/clear_refs"):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                            # reset the peak (VmHWM) to the current RSS
    before = status_mb("VmRSS")
    step()
    peak = status_mb("VmHWM")
else:                                           # elsewhere: the peak since the process started
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_rss_mb": peak, "step_mb": peak - before}))
"""


def memory(arch, S, B, use_torch):
    """Peak resident memory added by one training step, in fresh processes (MiB).

    ``step_mb`` is the growth of the process's peak RSS during the step, after
    the weights, the batch and a one-pair warm-up step: the step's own
    activations, gradients and scratch buffers.
    """
    result = {"net": arch, "image_size": S, "batch": B}
    for framework in ("npsiamese", "torch") if use_torch else ("npsiamese",):
        _note(f"bench: peak memory of a {arch} step, {B} pairs, {framework} (a fresh process) ...")
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, framework, arch, str(S), str(B)],
                             capture_output=True, text=True, check=True).stdout
        m = json.loads(out)
        key = "" if framework == "npsiamese" else "torch_"
        result[f"{key}step_mb"], result[f"{key}peak_rss_mb"] = m["step_mb"], m["peak_rss_mb"]
    if use_torch:
        result["ratio"] = result["step_mb"] / max(result["torch_step_mb"], 1e-9)
    return result


def augment_times(sizes, n, repeat):
    """ms to distort a batch of ``n`` images (``distort_batch``, p = 0.5) at each size."""
    from .augment import distort_batch

    rows = []
    rng = np.random.default_rng(0)
    for S in sizes:
        images = rng.random((n, S, S), dtype=np.float32)
        t = _time_calls([lambda: distort_batch(images, rng, p=0.5)], repeat)[0]
        rows.append({"image_size": S, "images": n, "ms": _stats(t)["median"]})
    return rows


_DATA_CHILD = """
import time, json, sys
from npsiamese.omniglot import load_omniglot, clear_memory_cache
t0 = time.perf_counter()
ds = load_omniglot(sys.argv[1], 105)             # decode every PNG, write the disk cache
t1 = time.perf_counter()
clear_memory_cache()
load_omniglot(sys.argv[1], 105)                  # read the disk cache
t2 = time.perf_counter()
print(json.dumps({"images": len(ds), "first_decode_s": t1 - t0, "cached_reload_s": t2 - t1}))
"""


def data_times(name="background"):
    """Seconds to load an Omniglot set at 105 px: first decode, then from the disk cache."""
    from .omniglot import DataNotFoundError, resolve_source

    try:
        resolve_source(name)
    except (DataNotFoundError, FileNotFoundError, ValueError) as e:
        return {"set": name, "skipped": f"data not found ({e})"}
    _note(f"bench: loading Omniglot {name} at 105 px, empty cache (a fresh process) ...")
    with tempfile.TemporaryDirectory(prefix="npsiamese-cache-") as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        out = subprocess.run([sys.executable, "-c", _DATA_CHILD, name], env=env, capture_output=True,
                             text=True, check=True).stdout
    return {"set": name, "image_size": 105, **json.loads(out)}


# --------------------------------------------------------------------------- report
def environment(use_torch):
    import numba
    env = {"numba_threads": numba.get_num_threads(), "numba_threading_layer": numba.config.THREADING_LAYER,
           "blas_threads_in_training": threads.training_blas_threads(), "cpus": os.cpu_count(),
           "numpy": np.__version__, "numba": numba.__version__, "torch": None,
           "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}
    if use_torch:
        import torch
        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return env


def format_report(r):
    lines = []
    e = r["environment"]
    lines.append(f"npsiamese bench: {e['cpus']} CPUs, Numba {e['numba']} with {e['numba_threads']} threads "
                 f"({e['numba_threading_layer']}), BLAS threads in training: {e['blas_threads_in_training']}"
                 + (f", PyTorch {e['torch']} with {e['torch_threads']} threads" if e["torch"] else ", no PyTorch"))
    lines.append(f"load average (1 min) before/after: {r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}"
                 " -- a busy machine slows everything; compare ratios from the same run")
    if e.get("keep_freed_memory"):
        lines.append("glibc keeps freed memory in this process (--keep-freed-memory), for both sides")
    lines.append("")
    lines.append("training step (float32; both towers, L1, head, loss, backward, SGD), median ms [min-max]")
    lines.append(f"{'net':8s} {'px':>4s} {'pairs':>5s} {'ms/step':>9s} {'min-max':>15s} {'pairs/s':>8s}"
                 f" {'torch ms':>9s} {'ratio':>6s}")
    for c in r["cases"]:
        torch_part = (f" {c['torch_ms_per_step']:9.1f} {c['ratio']:6.2f}" if c["ratio"] is not None
                      else f" {'-':>9s} {'-':>6s}")
        lines.append(f"{c['net']:8s} {c['image_size']:4d} {c['batch']:5d} {c['ms_per_step']:9.1f} "
                     f"{c['ms_min']:7.1f}-{c['ms_max']:<7.1f} {c['pairs_per_s']:8.0f}{torch_part}")
    lines.append("ratio = npsiamese / PyTorch (below 1: npsiamese is faster)")
    if r.get("layers"):
        lines.append("")
        lines.append(f"per layer, median ms (float32 matmul 2048x2048: {r['matmul_gflops']:.1f} GFLOP/s "
                     f"with the default BLAS threads, {r['matmul_gflops_1thread']:.1f} on one thread)")
        lines.append(f"{'net':8s} {'#':>2s} {'layer':44s} {'fwd':>8s} {'bwd':>8s} {'GF/s f':>7s} {'GF/s b':>7s}"
                     f" {'ref fwd':>9s} {'ref bwd':>9s}")
        for L in r["layers"]:
            gf = (f" {L['gflops_forward']:7.1f} {L['gflops_backward']:7.1f}" if "gflops_forward" in L
                  else f" {'':7s} {'':7s}")
            rf = (f" {L['reference_forward_ms']:9.1f} {L['reference_backward_ms']:9.1f}"
                  if "reference_forward_ms" in L else "")
            name = ("W " if L.get("algorithm") == "winograd" else "") + L["layer"]
            lines.append(f"{L['net'][:8]:8s} {L['index']:2d} {name[:44]:44s} {L['forward_ms']:8.2f} "
                         f"{L['backward_ms']:8.2f}{gf}{rf}")
        if any(L.get("algorithm") == "winograd" for L in r["layers"]):
            lines.append("W: computed with Winograd's F(2x2, 3x3), 2.25x fewer multiplies; GF/s always counts "
                         "a direct convolution's, so these can pass the matmul rate")
        for net, est in r.get("reference_step", {}).items():
            lines.append(f"{net}: a training step with the loop references instead of the kernels would take "
                         f"about {est['reference_ms_per_step']:.0f} ms, {est['speedup']:.0f}x the kernels' "
                         f"{est['ms_per_step']:.0f} ms")
    j = r.get("jit")
    if j:
        lines.append("")
        lines.append(f"JIT, fresh process: cold cache {j['cold_first_step_s']:.1f} s to compile and run the first "
                     f"steps (+{j['cold_import_s']:.1f} s import); warm cache {j['warm_first_step_s']:.2f} s "
                     f"(+{j['warm_import_s']:.2f} s import)")
    m = r.get("memory")
    if m:
        lines.append(f"memory, {m['net']} net {m['batch']} pairs: a step adds {m['step_mb']:.0f} MiB to the peak"
                     + (f", PyTorch's {m['torch_step_mb']:.0f} MiB (ratio {m['ratio']:.2f})" if "ratio" in m else ""))
    for a in r.get("augment", []):
        lines.append(f"augmentation: distort_batch on {a['images']} images at {a['image_size']} px: {a['ms']:.1f} ms")
    d = r.get("data")
    if d and "skipped" in d:
        lines.append(f"data: skipped ({d['skipped']})")
    elif d:
        lines.append(f"data: {d['set']} at 105 px: {d['images']} images, first decode "
                     f"{d['first_decode_s']:.1f} s, cached reload {d['cached_reload_s']:.2f} s")
    return "\n".join(lines)


def run(args):
    use_torch = not args.no_torch and torch_available()
    if not args.no_torch and not use_torch:
        _note("bench: PyTorch is not installed; timing npsiamese alone")
    skip = set(args.skip or ())
    quick = args.quick
    repeat = args.repeat or (2 if quick else 7)
    if args.keep_freed_memory:
        from .train import keep_freed_memory
        keep_freed_memory()
    r = {"load_before": list(os.getloadavg()), "environment": environment(use_torch)}
    r["environment"]["keep_freed_memory"] = bool(args.keep_freed_memory)
    cases = list(QUICK_CASES if quick else CASES)
    if args.koch:
        cases.append(QUICK_KOCH_CASE if quick else KOCH_CASE)
    r["cases"] = time_cases(cases, repeat, use_torch)
    _note("bench: float32 matmul 2048x2048 ...")
    n = 256 if quick else 2048
    r["matmul_gflops"] = matmul_gflops(n, repeat=max(2, repeat // 2))
    r["matmul_gflops_1thread"] = matmul_gflops(n, repeat=max(2, repeat // 2), blas_threads=1)
    r["layers"] = []
    if "layers" not in skip:
        layer_cases = [(a, S, B) for a, S, B in cases if B == min(b for _, _, b in cases) and a != "koch"]
        if args.koch:
            layer_cases.append(QUICK_KOCH_CASE if quick else KOCH_CASE)
        for arch, S, B in layer_cases:
            r["layers"] += time_layers(arch, S, B, repeat, reference=args.reference and arch == "seed",
                                       reference_repeat=1 if quick else 2)
        if args.reference:
            r["reference_step"] = _reference_step(r)
    r["jit"] = jit_times() if "jit" not in skip else {}
    if "memory" not in skip:
        arch, S, B = ("seed", 28, 8) if quick else ("seed", 105, 128)
        r["memory"] = memory(arch, S, B, use_torch)
    else:
        r["memory"] = {}
    r["augment"] = []
    if "augment" not in skip:
        _note("bench: augmentation ...")
        r["augment"] = augment_times((105, 35), 16 if quick else 128, repeat)
    r["data"] = data_times() if "data" not in skip else {"skipped": "--skip data"}
    r["load_after"] = list(os.getloadavg())
    return r


def _reference_step(r):
    """Estimated step time with the references: swap each conv/pool layer's kernel time for its reference's."""
    out = {}
    for c in r["cases"]:
        rows = [L for L in r["layers"] if (L["net"], L["image_size"], L["batch"]) ==
                (c["net"], c["image_size"], c["batch"]) and "reference_forward_ms" in L]
        if not rows or c["net"] in out:
            continue
        kernels = sum(L["forward_ms"] + L["backward_ms"] for L in rows)
        refs = sum(L["reference_forward_ms"] + L["reference_backward_ms"] for L in rows)
        est = c["ms_per_step"] - kernels + refs
        out[c["net"]] = {"image_size": c["image_size"], "batch": c["batch"], "ms_per_step": c["ms_per_step"],
                         "reference_ms_per_step": est, "speedup": est / c["ms_per_step"]}
    return out


def bench_command(args):
    r = run(args)
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    return 0


def _add_arguments(p):
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--quick", action="store_true", help="tiny sizes and repeat counts (for tests)")
    p.add_argument("--koch", action="store_true", help="also the Koch net at 105 px, 32 pairs (slow)")
    p.add_argument("--reference", action="store_true",
                   help="also time the loop references of conv and pool, seed net, per layer (slow)")
    p.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch even if installed")
    p.add_argument("--repeat", type=int, default=None, help="timed steps per case (default 7; --quick: 2)")
    p.add_argument("--skip", action="append", choices=["layers", "jit", "memory", "augment", "data"],
                   help="leave a measurement out (repeatable)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="first make glibc keep freed memory in the process, as `npsiamese train` does "
                        "(both sides of the comparison get faster)")


def add_bench_parser(sub):
    """Register ``npsiamese bench``."""
    p = sub.add_parser(
        "bench", help="time a training step, with PyTorch beside it if installed",
        description="\n\n".join(__doc__.split("\n\n")[2:4]),
        epilog="examples:\n  npsiamese bench\n  npsiamese bench --koch --reference\n"
               "  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 npsiamese bench --json > bench.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=bench_command)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m npsiamese.bench", description=__doc__.splitlines()[0])
    _add_arguments(p)
    return bench_command(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
