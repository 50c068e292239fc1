"""The Siamese network: one tower, two inputs, an L1 join and a logistic head.

    x1 -> tower -> h1 \
                        |h1 - h2| -> Dense(D -> 1) -> s -> sigmoid -> p(same | x1, x2)
    x2 -> tower -> h2 /

The two "twins" are the *same* tower with the *same* weights. We make this
literal: the tower runs once on the stacked batch ``[x1; x2]``. A weight's
gradient in every layer is a sum over the batch, so it automatically receives
the sum of the contributions from both branches (micrograd's ``+=``).

More generally the tower can run once on a batch of images ``x`` and the head
can score any list of pairs ``(left[k], right[k])`` of rows of that batch: a
batch of B images then yields up to B (B - 1) / 2 training pairs for the price
of B tower passes. ``loss_and_grad`` is the classic two-input case of
``pairs_loss_and_grad``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numba import njit

from ._checks import NonFiniteError, check_array, check_positive_int
from .activations import ReLU, Sigmoid, sigmoid
from .conv import Conv2D
from .dense import Dense, Flatten
from .distance import L1Distance
from .loss import BCEWithLogits
from .pool import MaxPool2D
from .threads import training_threads

INITS = ("he", "glorot", "koch")


# cache=True: compiled once per dtype and kept on disk. fastmath=False: plain additions.
# Not parallel: two pairs may share a row, so the iterations do not write disjoint memory.
@njit(cache=True, fastmath=False)
def _add_rows_kernel(dh, rows, src):
    """dh[rows[k]] += src[k] for every k: ``np.add.at(dh, rows, src)``, 10x faster."""
    for k in range(rows.size):
        for d in range(src.shape[1]):
            dh[rows[k], d] += src[k, d]

# --- architectures ----------------------------------------------------------
# A tower is described by a JSON-friendly list of [kind, options] entries; the
# list is stored in every checkpoint so that `load` can rebuild the network.


# Every tower pools *before* its ReLU. The two commute: max(0, max of a window)
# = max of the window of max(0, x), and both orders send a window's gradient to
# the same pixel. Pooling first gives the same outputs and gradients while the
# ReLU touches a quarter of the numbers.


def seed_tower():
    """The original project's tower: Conv(64, 3x3) ReLU, MaxPool 2x2, Flatten, Dense(128) ReLU."""
    return [["conv", {"filters": 64, "kernel": 3}], ["pool", {"size": 2}], ["relu", {}],
            ["flatten", {}], ["dense", {"units": 128}], ["relu", {}]]


def koch_tower():
    """Koch et al. (2015), for 105x105 inputs: 64@10x10, 128@7x7, 128@4x4, 256@4x4, Dense 4096 sigmoid."""
    return [["conv", {"filters": 64, "kernel": 10}], ["pool", {"size": 2}], ["relu", {}],
            ["conv", {"filters": 128, "kernel": 7}], ["pool", {"size": 2}], ["relu", {}],
            ["conv", {"filters": 128, "kernel": 4}], ["pool", {"size": 2}], ["relu", {}],
            ["conv", {"filters": 256, "kernel": 4}], ["relu", {}],
            ["flatten", {}], ["dense", {"units": 4096}], ["sigmoid", {}]]


def compact_tower(widths=(64, 64, 64, 64), embedding=128, activation="none"):
    """A small net that trains on a CPU at 28-52 px: blocks of Conv 3x3 (pad 1), MaxPool 2x2, ReLU."""
    spec = []
    for f in widths:
        spec += [["conv", {"filters": int(f), "kernel": 3, "pad": 1}], ["pool", {"size": 2}], ["relu", {}]]
    spec += [["flatten", {}], ["dense", {"units": int(embedding)}]]
    if activation not in ("sigmoid", "relu", "none"):
        raise ValueError(f"compact_tower: activation must be 'sigmoid', 'relu' or 'none', got {activation!r}.")
    if activation != "none":
        spec.append([activation, {}])
    return spec


ARCHITECTURES = {"seed": seed_tower, "koch": koch_tower, "compact": compact_tower}
DEFAULT_IMAGE_SIZE = {"seed": 105, "koch": 105, "compact": 35}


def build_tower(spec, image_size, dtype=np.float32):
    """Instantiate the layers of ``spec`` for (1, image_size, image_size) inputs.

    Returns ``(layers, embedding_dim)``; raises ValueError if a layer does not
    fit (e.g. a kernel larger than its input).
    """
    layers, shape = [], (1, image_size, image_size)
    for i, entry in enumerate(spec):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], dict)):
            raise ValueError(f"build_tower: entry {i} must be [kind, options], got {entry!r}.")
        kind, opt = entry
        if kind == "conv":
            # The first layer's input is the images: nothing upstream needs its
            # gradient, so its backward skips dx (a third of a conv's work).
            layer = Conv2D(shape[0], opt["filters"], opt["kernel"], stride=opt.get("stride", 1),
                           pad=opt.get("pad", 0), dtype=dtype, needs_input_grad=i > 0)
        elif kind == "pool":
            layer = MaxPool2D(opt.get("size", 2), stride=opt.get("stride"), dtype=dtype)
        elif kind == "dense":
            if len(shape) != 1:
                raise ValueError(f"build_tower: entry {i} (dense) needs a flat input; add ['flatten', {{}}] before it.")
            layer = Dense(shape[0], opt["units"], dtype=dtype)
        elif kind in ("relu", "sigmoid", "flatten"):
            layer = {"relu": ReLU, "sigmoid": Sigmoid, "flatten": Flatten}[kind](dtype=dtype)
        else:
            raise ValueError(f"build_tower: unknown layer kind {kind!r} in entry {i}; "
                             "use conv, pool, dense, relu, sigmoid or flatten.")
        try:
            shape = layer.output_shape(shape)
        except ValueError as e:
            raise ValueError(f"build_tower: entry {i} ({kind}) does not fit an input of shape {shape} "
                             f"(image_size={image_size}): {e}") from None
        if min(shape) < 1:
            raise ValueError(f"build_tower: entry {i} ({kind}) gives an empty output {shape} for "
                             f"image_size={image_size}; use a larger image or a smaller kernel.")
        layers.append(layer)
    if len(shape) != 1:
        raise ValueError(f"build_tower: the tower must end in a flat embedding, got shape {shape}; "
                         "end it with flatten and dense.")
    return layers, shape[0]


def initialise(layers, scheme, rng):
    """Fill the parameters of ``layers`` in place.

    ``he``: w ~ N(0, 2 / fan_in), b = 0. ``glorot``: w ~ U(+-sqrt(6 / (fan_in + fan_out))), b = 0.
    ``koch`` (the paper): conv w ~ N(0, 0.01^2), dense w ~ N(0, 0.2^2), b ~ N(0.5, 0.01^2).
    """
    if scheme not in INITS:
        raise ValueError(f"initialise: init must be one of {INITS}, got {scheme!r}.")
    for layer in layers:
        if "w" not in layer.params:
            continue
        w, b = layer.params["w"], layer.params["b"]
        if isinstance(layer, Conv2D):
            F, C, HH, WW = w.shape
            fan_in, fan_out, std_koch = C * HH * WW, F * HH * WW, 1e-2
        else:
            fan_in, fan_out = w.shape
            std_koch = 2e-1
        if scheme == "he":
            w[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape)
            b[...] = 0
        elif scheme == "glorot":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w[...] = rng.uniform(-limit, limit, w.shape)
            b[...] = 0
        else:
            w[...] = rng.normal(0.0, std_koch, w.shape)
            b[...] = rng.normal(0.5, 1e-2, b.shape)


# --- the network -------------------------------------------------------------


class SiameseNetwork:
    """Shared-weight Siamese network returning p(same | x1, x2).

    Parameters
    ----------
    arch : "seed", "koch", "compact" or a tower spec (list of [kind, options]).
    image_size : int, side S of the (N, 1, S, S) inputs (default depends on arch).
    init : "he", "glorot" or "koch".
    dtype : float32 for training, float64 for gradient checks.
    seed : int, seeds the initialisation.
    arch_options : keyword arguments for the architecture function (e.g.
        ``widths``, ``embedding`` for "compact").
    """

    def __init__(self, arch="compact", image_size=None, init="he", dtype=np.float32, seed=0, **arch_options):
        if isinstance(arch, str):
            if arch not in ARCHITECTURES:
                raise ValueError(f"SiameseNetwork: arch must be one of {sorted(ARCHITECTURES)} or a tower spec, got {arch!r}.")
            spec = ARCHITECTURES[arch](**arch_options)
            image_size = DEFAULT_IMAGE_SIZE[arch] if image_size is None else image_size
        else:
            spec = json.loads(json.dumps(arch))  # a plain, JSON-safe copy
            if image_size is None:
                raise ValueError("SiameseNetwork: image_size is required with a custom tower spec.")
        self.image_size = check_positive_int(image_size, "SiameseNetwork", "image_size")
        self.dtype = np.dtype(dtype)
        self.config = {"arch": arch if isinstance(arch, str) else "custom", "arch_options": arch_options,
                       "spec": spec, "image_size": self.image_size, "init": init, "dtype": self.dtype.name,
                       "seed": seed}
        self.tower, self.embedding_dim = build_tower(spec, self.image_size, self.dtype)
        self.distance = L1Distance(dtype=self.dtype)
        self.head = Dense(self.embedding_dim, 1, dtype=self.dtype)
        self.criterion = BCEWithLogits()
        # The images are checked for NaN/inf on the way in (_check_images) and
        # the logits on the way out (_pairs_loss_and_grad); checking every
        # layer's input as well would cost a pass over each activation.
        for _, layer in self.layers():
            layer.check_finite = False
        self.distance.check_finite = False
        rng = np.random.default_rng(seed)
        initialise(self.tower + [self.head], init, rng)
        self.last_logits = None  # logits of the last training step, for accuracy logging

    # -- parameters ------------------------------------------------------------
    def layers(self):
        """``(name, layer)`` for every layer that may hold parameters, tower first."""
        return [(f"tower.{i}", layer) for i, layer in enumerate(self.tower)] + [("head", self.head)]

    def named_parameters(self):
        """Yield ``(name, param, grad)``; names are ``"tower.<i>.<key>"`` and ``"head.<key>"``."""
        for lname, layer in self.layers():
            for key, p, g in layer.parameters():
                yield f"{lname}.{key}", p, g

    def zero_grad(self):
        for _, layer in self.layers():
            layer.zero_grad()

    def num_parameters(self):
        return sum(p.size for _, p, _ in self.named_parameters())

    # -- forward / backward ------------------------------------------------------
    def _check_images(self, x, where, name="x"):
        S = self.image_size
        return check_array(x, where, name, ndim=4, dtype=self.dtype, shape=(None, 1, S, S))

    def tower_forward(self, x):
        """Embed a batch: x (N, 1, S, S) -> h (N, D). Keeps the caches for ``tower_backward``."""
        for layer in self.tower:
            x = layer.forward(x)
        return x

    def tower_backward(self, dh):
        """Backpropagate dh (N, D) through the tower; adds into every layer's grads.

        Returns the gradient w.r.t. the images, or None when the first layer is
        a convolution (which skips that gradient: training never needs it).
        """
        for layer in reversed(self.tower):
            dh = layer.backward(dh)
        return dh

    def pairs_loss_and_grad(self, x, left, right, y, weight=None):
        """Loss over pairs of rows of one batch, and its gradient in every ``grads``.

        Parameters
        ----------
        x : (B, 1, S, S) images; the tower runs on them once.
        left, right : (M,) int arrays, pair k is (x[left[k]], x[right[k]]).
        y : (M,) labels, 1 = same character, 0 = different.
        weight : (M,) optional pair weights (see ``BCEWithLogits``).

        Returns the loss (float). Gradients are *added* to the layers' grads:
        call ``zero_grad()`` first.
        """
        self._check_images(x, "SiameseNetwork.pairs_loss_and_grad")
        B = x.shape[0]
        left, right = self._check_pairs(left, right, B)
        y = check_array(np.ascontiguousarray(y, dtype=self.dtype), "SiameseNetwork.pairs_loss_and_grad", "y",
                        ndim=1, shape=left.shape)
        if weight is not None:
            weight = np.ascontiguousarray(weight, dtype=self.dtype)
        with training_threads():  # BLAS on one thread, Numba's kernels on all (see npsiamese.threads)
            return self._pairs_loss_and_grad(x, left, right, y, weight)

    def _pairs_loss_and_grad(self, x, left, right, y, weight):
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged step is reported just below
            h = self.tower_forward(x)                        # (B, D), once for both twins
            d = self.distance.forward(h[left], h[right])     # (M, D) = |h_left - h_right|
            s = self.head.forward(d)[:, 0]                   # (M,) similarity logits
        self.last_logits = s
        if not np.isfinite(s).all():  # finite images, so the weights or activations blew up
            raise NonFiniteError("SiameseNetwork: the similarity logits are NaN or infinite: the "
                                 "weights or activations overflowed; lower the learning rate.")
        loss = self.criterion.forward(s, y, weight)
        ds = self.criterion.backward()                       # dL/ds
        dd = self.head.backward(np.ascontiguousarray(ds[:, None]))
        dh_left, dh_right = self.distance.backward(dd)
        # Each image's embedding gradient is the sum over every pair it is in, on
        # either side: the shared weights thus get both branches' contributions.
        dh = np.zeros_like(h)
        _add_rows_kernel(dh, left, dh_left)
        _add_rows_kernel(dh, right, dh_right)
        self.tower_backward(dh)
        return loss

    def loss_and_grad(self, x1, x2, y):
        """The classic Siamese step: stack [x1; x2], run the tower once, pair row k with row N + k."""
        self._check_images(x1, "SiameseNetwork.loss_and_grad", "x1")
        self._check_images(x2, "SiameseNetwork.loss_and_grad", "x2")
        if x1.shape != x2.shape:
            raise ValueError(f"SiameseNetwork.loss_and_grad: x1 and x2 must have the same shape, got {x1.shape} and {x2.shape}.")
        N = x1.shape[0]
        x = np.concatenate([x1, x2])
        return self.pairs_loss_and_grad(x, np.arange(N), np.arange(N, 2 * N), y)

    def _check_pairs(self, left, right, B):
        left = np.asarray(left)
        right = np.asarray(right)
        for name, idx in (("left", left), ("right", right)):
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"SiameseNetwork: {name} must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}.")
            if idx.size and (idx.min() < 0 or idx.max() >= B):
                raise ValueError(f"SiameseNetwork: {name} indexes rows of a batch of {B}, got values "
                                 f"in [{idx.min()}, {idx.max()}].")
        if left.shape != right.shape or left.size == 0:
            raise ValueError(f"SiameseNetwork: left and right must be non-empty and the same length, "
                             f"got {left.shape} and {right.shape}.")
        return left, right

    # -- inference ---------------------------------------------------------------
    def embed(self, x, batch_size=256):
        """Embeddings h (N, D) of images x (N, 1, S, S), computed in chunks."""
        self._check_images(x, "SiameseNetwork.embed")
        with training_threads():
            out = [self.tower_forward(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        for layer in self.tower:
            layer.cache = None  # inference keeps nothing for backward
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), self.dtype)

    def similarity_from_embeddings(self, e1, e2):
        """p(same) for embedding pairs: sigmoid(|e1 - e2| @ w + b). e1, e2 (M, D) -> (M,)."""
        w, b = self.head.params["w"], self.head.params["b"]
        return sigmoid(np.abs(e1 - e2) @ w[:, 0] + b[0])

    def similarity_matrix(self, e1, e2):
        """p(same) for every pair: e1 (T, D), e2 (W, D) -> (T, W)."""
        w, b = self.head.params["w"], self.head.params["b"]
        s = np.stack([np.abs(e - e2) @ w[:, 0] for e in e1]) + b[0] if len(e1) else np.zeros((0, len(e2)))
        return sigmoid(s.astype(self.dtype, copy=False))

    def predict(self, x1, x2):
        """p(same | x1, x2) for images x1, x2 (N, 1, S, S) -> (N,)."""
        self._check_images(x1, "SiameseNetwork.predict", "x1")
        self._check_images(x2, "SiameseNetwork.predict", "x2")
        if x1.shape != x2.shape:
            raise ValueError(f"SiameseNetwork.predict: x1 and x2 must have the same shape, got {x1.shape} and {x2.shape}.")
        return self.similarity_from_embeddings(self.embed(x1), self.embed(x2))

    # -- checkpoints -------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter, keyed by ``named_parameters`` names."""
        return {name: p.copy() for name, p, _ in self.named_parameters()}

    def load_state_dict(self, state, source="state"):
        """Copy parameters in; every name and shape must match this network."""
        ours = {name: p for name, p, _ in self.named_parameters()}
        missing = sorted(set(ours) - set(state))
        extra = sorted(set(state) - set(ours))
        if missing or extra:
            raise ValueError(f"SiameseNetwork: {source} does not match this architecture: "
                             f"missing {missing[:5]}, unexpected {extra[:5]}.")
        for name, p in ours.items():
            if state[name].shape != p.shape:
                raise ValueError(f"SiameseNetwork: {source} has {name} of shape {state[name].shape}, "
                                 f"this architecture needs {p.shape}.")
        for name, p in ours.items():
            p[...] = state[name]

    def save(self, path, extra=None):
        """Write weights and architecture config to ``path`` (.npz), atomically.

        ``extra`` maps further names to arrays (e.g. optimiser state), stored
        under ``extra/<name>``.
        """
        path = Path(path)
        arrays = {f"param/{k}": v for k, v in self.state_dict().items()}
        for k, v in (extra or {}).items():
            arrays[f"extra/{k}"] = np.asarray(v)
        arrays["config"] = np.array(json.dumps(self.config))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path, arch=None, image_size=None, return_extra=False):
        """Rebuild a network from a checkpoint written by ``save``.

        If ``arch`` or ``image_size`` is given and differs from the checkpoint's,
        a ValueError says so. With ``return_extra`` returns ``(net, extra)``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SiameseNetwork.load: no checkpoint at {path}.")
        try:
            data = np.load(path, allow_pickle=False)
            config = json.loads(str(data["config"]))
        except Exception as e:
            raise ValueError(f"SiameseNetwork.load: {path} is not an npsiamese checkpoint ({e}).") from None
        if arch is not None and arch != config["arch"]:
            raise ValueError(f"SiameseNetwork.load: {path} holds a {config['arch']!r} network, expected {arch!r}.")
        if image_size is not None and image_size != config["image_size"]:
            raise ValueError(f"SiameseNetwork.load: {path} was trained at image_size={config['image_size']}, "
                             f"got image_size={image_size}.")
        tower = config["arch"] if config["arch"] != "custom" else config["spec"]
        options = config["arch_options"] if config["arch"] != "custom" else {}
        net = cls(tower, image_size=config["image_size"], init=config["init"], dtype=config["dtype"],
                  seed=config["seed"], **options)
        state = {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
        net.load_state_dict(state, source=str(path))
        if return_extra:
            return net, {k[len("extra/"):]: data[k] for k in data.files if k.startswith("extra/")}
        return net

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.tower)
        return f"SiameseNetwork(image_size={self.image_size}, tower=[{inner}], head=Dense({self.embedding_dim}, 1))"
