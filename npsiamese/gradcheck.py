"""Gradient checks: analytic backward passes against centred finite differences.

For a scalar function L of a tensor t, the centred difference

    dL/dt_i ~ (L(t + h e_i) - L(t - h e_i)) / (2 h)

has error O(h^2). In float64 with h = 1e-6 it agrees with a correct analytic
gradient to about 1e-9 relative. A layer with output ``out`` is turned into a
scalar with a fixed random projection ``L = sum(out * r)``, so that
``dL/dout = r`` is what we feed to ``backward``.

The relative error of two gradient tensors a and b is

    max_i |a_i - b_i| / max(1e-8, max_i (|a_i| + |b_i|))

(one number per tensor, scale-free, not fooled by entries that are ~0).
A check passes when it is <= 1e-6.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .activations import ReLU, Sigmoid
from .conv import Conv2D
from .dense import Dense, Flatten
from .distance import L1Distance
from .loss import BCEWithLogits
from .network import SiameseNetwork
from .pool import MaxPool2D

THRESHOLD = 1e-6


@dataclass
class CheckResult:
    """One tensor's check: which layer, which tensor, the error, and the verdict."""
    name: str
    tensor: str
    max_rel_error: float
    passed: bool

    def to_dict(self):
        return asdict(self)


def rel_error(a, b):
    """max_i |a_i - b_i| / max(1e-8, max_i (|a_i| + |b_i|))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numerical_gradient(f, t, h=1e-6, indices=None):
    """Centred-difference gradient of the scalar function ``f()`` w.r.t. array ``t``.

    ``t`` is perturbed in place and restored. ``indices`` (flat) limits the
    check to some entries; the others are left 0 in the result.
    """
    grad = np.zeros_like(t, dtype=np.float64)
    flat, gflat = t.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + h
        f_plus = f()
        flat[i] = old - h
        f_minus = f()
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * h)
    return grad


def _compare(name, tensor, analytic, numeric, indices=None):
    if indices is not None:
        analytic = analytic.reshape(-1)[indices]
        numeric = numeric.reshape(-1)[indices]
    err = rel_error(analytic, numeric)
    return CheckResult(name, tensor, err, bool(err <= THRESHOLD))


def check_layer(layer, inputs, name=None, seed=0, h=1e-6):
    """Check ``layer.backward`` for every input and parameter of ``layer``.

    Parameters
    ----------
    layer : a Layer in float64; ``layer.forward(*inputs)`` must work.
    inputs : dict {argument name: float64 array}, in forward's argument order.

    Returns a list of CheckResult, one per input and per parameter.
    """
    name = name or layer.name
    rng = np.random.default_rng(seed)
    args = list(inputs.values())
    r = rng.standard_normal(np.shape(layer.forward(*args)))

    def scalar():
        return float(np.sum(layer.forward(*args) * r))

    layer.zero_grad()
    layer.forward(*args)
    dinputs = layer.backward(r)
    if not isinstance(dinputs, tuple):
        dinputs = (dinputs,)
    results = [_compare(name, arg_name, d, numerical_gradient(scalar, x, h))
               for (arg_name, x), d in zip(inputs.items(), dinputs)]
    for key, p, g in layer.parameters():
        results.append(_compare(name, key, g.copy(), numerical_gradient(scalar, p, h)))
    return results


def check_loss(seed=0, h=1e-6, n=16):
    """Check dL/ds of the binary cross-entropy, with and without pair weights."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(n) * 3
    y = (rng.random(n) < 0.5).astype(np.float64)
    weight = rng.random(n) + 0.1
    results = []
    for tensor, w in (("s", None), ("s (weighted)", weight)):
        loss = BCEWithLogits()
        loss.forward(s, y, w)
        ds = loss.backward()
        results.append(_compare("BCEWithLogits", tensor, ds, numerical_gradient(lambda: loss.forward(s, y, w), s, h)))
    return results


def check_network(net, x1, x2, y, name="SiameseNetwork", h=1e-6, max_entries=None, seed=0):
    """Check the loss gradient w.r.t. every shared weight of a float64 network.

    ``max_entries`` samples that many entries per tensor (all when None), which
    keeps the check fast for large layers.
    """
    rng = np.random.default_rng(seed)

    def scalar():
        return net.loss_and_grad(x1, x2, y)  # grads are not read during the scan

    net.zero_grad()
    net.loss_and_grad(x1, x2, y)
    analytic = {k: g.copy() for k, _, g in net.named_parameters()}
    results = []
    for key, p, _ in net.named_parameters():
        idx = None
        if max_entries is not None and p.size > max_entries:
            idx = rng.choice(p.size, max_entries, replace=False)
        results.append(_compare(name, key, analytic[key], numerical_gradient(scalar, p, h, idx), idx))
    return results


def _away_from_ties(rng, shape, gap=1e-3):
    """Distinct values, each at least ``gap`` from the others and from 0 (no max-pool ties, no ReLU kinks)."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2 + 0.5) * gap * 4
    return rng.permutation(values).reshape(shape)


def tiny_network(seed=0, dtype=np.float64):
    """A small Siamese net using every layer kind, for whole-network checks."""
    spec = [["conv", {"filters": 3, "kernel": 3, "pad": 1}], ["relu", {}], ["pool", {"size": 2}],
            ["conv", {"filters": 4, "kernel": [2, 3], "stride": 1}], ["relu", {}],
            ["flatten", {}], ["dense", {"units": 6}], ["sigmoid", {}]]
    return SiameseNetwork(spec, image_size=8, init="he", dtype=dtype, seed=seed)


def run_all_checks(seed=0):
    """Every layer, the loss and a whole Siamese network, in float64. Returns a list of CheckResult."""
    rng = np.random.default_rng(seed)
    f64 = np.float64

    def with_params(layer):
        for _, p, _ in layer.parameters():
            p[...] = rng.standard_normal(p.shape) * 0.5
        return layer

    results = []
    results += check_layer(with_params(Conv2D(2, 3, 3, stride=1, pad=1, dtype=f64)),
                           {"x": rng.standard_normal((2, 2, 5, 5))}, "Conv2D(3x3, pad 1)", seed)
    results += check_layer(with_params(Conv2D(2, 2, (3, 2), stride=2, pad=(0, 1), dtype=f64)),
                           {"x": rng.standard_normal((2, 2, 7, 6))}, "Conv2D(3x2, stride 2)", seed)
    results += check_layer(MaxPool2D(2, dtype=f64), {"x": _away_from_ties(rng, (2, 3, 6, 6))}, "MaxPool2D(2)", seed)
    results += check_layer(MaxPool2D(3, stride=2, dtype=f64), {"x": _away_from_ties(rng, (2, 2, 7, 7))},
                           "MaxPool2D(3, stride 2)", seed)
    results += check_layer(Flatten(dtype=f64), {"x": rng.standard_normal((3, 2, 2, 2))}, seed=seed)
    results += check_layer(with_params(Dense(5, 4, dtype=f64)), {"x": rng.standard_normal((3, 5))}, seed=seed)
    results += check_layer(ReLU(dtype=f64), {"x": _away_from_ties(rng, (4, 6))}, seed=seed)
    results += check_layer(Sigmoid(dtype=f64), {"x": rng.standard_normal((4, 6)) * 3}, seed=seed)
    results += check_layer(L1Distance(dtype=f64), {"h1": rng.standard_normal((4, 6)), "h2": rng.standard_normal((4, 6))},
                           seed=seed)
    results += check_loss(seed)
    net = tiny_network(seed)
    x1 = rng.random((3, 1, 8, 8))
    x2 = rng.random((3, 1, 8, 8))
    results += check_network(net, x1, x2, np.array([1.0, 0.0, 1.0]), "SiameseNetwork (tiny)", seed=seed)
    return results


def format_table(results):
    """The results as an aligned text table."""
    rows = [("layer", "tensor", "max rel error", "result")]
    rows += [(r.name, r.tensor, f"{r.max_rel_error:.2e}", "pass" if r.passed else "FAIL") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
