"""Training: data, batches, schedules, validation, checkpoints, resume.

A training step embeds a batch of B images with the shared tower (one pass)
and scores pairs of them with the L1 + logistic head. Two batch kinds:

* ``groups`` (default): P characters x K images each, usually P characters of
  one alphabet (hard negatives, like a test task); every one of the
  B (B - 1) / 2 pairs of the batch is a training pair, the "same" and the
  "different" pairs weighted to count half each. The tower, which is the cost,
  runs B times for B (B - 1) / 2 pairs.
* ``pairs``: the classic recipe, a batch of balanced same/different pairs
  (:class:`npsiamese.sampling.PairSampler`), the tower runs on ``[x1; x2]``.

Everything a run needs to continue is in ``last.npz``: weights, optimiser
state, step counters and the random generator's state, so ``--resume``
reproduces an uninterrupted run exactly.
"""
from __future__ import annotations

import csv
import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ._checks import NonFiniteError
from .augment import dihedral, distort_batch
from .network import SiameseNetwork
from .download import FILES, download
from .omniglot import DataNotFoundError, data_dir, load_omniglot
from .oneshot import OneShotResult, check_views, make_tasks
from .optim import SGD, Adam, cosine_learning_rate, koch_learning_rate, koch_momentum
from .sampling import GroupSampler, PairSampler, split_alphabets


@dataclass
class TrainConfig:
    """Every setting of a training run (saved as ``config.json`` in the run folder)."""
    # data
    data: str | None = None            # folder with the Omniglot zips; None: $NPSIAMESE_DATA or the cache
    train_set: str = "small1"          # small1 | small2 | background | a path
    val_set: str | None = "small2"     # validate on the alphabets of this set that train_set lacks
    val_alphabets: int = 0             # or: hold out this many (seeded) alphabets of train_set
    image_size: int = 35
    # model
    arch: str = "compact"
    widths: tuple = (64, 64, 64, 64)   # compact net only
    embedding: int = 128               # compact net only
    activation: str = "none"           # compact net only: none | relu | sigmoid
    init: str = "he"
    # batches
    batch: str = "groups"              # groups | pairs
    classes_per_batch: int = 16        # groups: P
    images_per_class: int = 4          # groups: K
    same_alphabet: bool = True         # groups: the P characters come from one alphabet
    symmetries: int = 1                # groups: 8 = rotated/mirrored characters are new classes
    batch_pairs: int = 128             # pairs: pairs per step
    hard_negatives: float = 0.5        # pairs: share of different pairs from one alphabet
    distort: float = 0.5               # probability of each affine component (0 = no distortion)
    # optimiser
    optimizer: str = "adam"            # adam | sgd
    lr: float = 3e-3
    momentum: float = 0.9              # sgd: final momentum (koch schedule ramps up to it)
    weight_decay: float = 0.0
    schedule: str = "cosine"           # cosine | koch | constant
    warmup: float = 0.03               # cosine: fraction of the budget spent warming up
    # budget: the first limit reached ends training
    minutes: float | None = 4.3
    steps: int | None = None
    epochs: float | None = None        # an epoch = as many images as the training set holds
    pairs: int | None = None
    # validation and checkpoints
    val_every: int = 200               # steps between validations (and last.npz saves)
    val_trials: int = 100              # 20-way tasks for validation during training
    final_trials: int = 400            # 20-way tasks for the final evaluation
    test_views: int = 1                # final evaluation: average p(same) over 1, 4 or 8 symmetries of a pair
    patience: int = 0                  # early stopping: validations without improvement (0 = off)
    baselines: tuple = ("mhd", "pixel")
    seed: int = 0
    out: str | None = None
    preset: str = "tiny"

    def to_json(self):
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown setting(s) {unknown}.")
        d = dict(d)
        for key in ("widths", "baselines"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        return cls(**d)


PRESETS = {
    "tiny": dict(preset="tiny", train_set="small1", val_set="small2", minutes=4.3, symmetries=8, distort=1.0,
                 test_views=8),
    "full": dict(preset="full", train_set="background", val_set=None, val_alphabets=5,
                 minutes=55.0, val_every=500, symmetries=8, test_views=8),
    "koch": dict(preset="koch", train_set="background", val_set=None, val_alphabets=10, image_size=105,
                 arch="koch", init="koch", batch="pairs", batch_pairs=128, hard_negatives=0.0,
                 optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=2e-4, schedule="koch",
                 minutes=None, epochs=200, patience=20, val_every=1000, distort=0.5),
}


def config_for(preset="tiny", **overrides):
    """The preset's settings with ``overrides`` on top (None values are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"train: preset must be one of {sorted(PRESETS)}, got {preset!r}.")
    d = dict(PRESETS[preset])
    d.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(d)


# --------------------------------------------------------------------------- data


def load_or_download(name, image_size, data=None):
    """``load_omniglot``; a named official set that is missing is downloaded first."""
    try:
        return load_omniglot(name, image_size=image_size, data_dir=data)
    except DataNotFoundError:
        if name not in FILES:
            raise
        tqdm.write(f"Omniglot set {name!r} is not in {data_dir(data)}: downloading the official file")
        download(name, dest_dir=data)
        return load_omniglot(name, image_size=image_size, data_dir=data)


def load_data(cfg):
    """(train, val) Omniglot sets at ``cfg.image_size`` with disjoint alphabets."""
    train = load_or_download(cfg.train_set, cfg.image_size, cfg.data)
    if cfg.val_set:
        val = load_or_download(cfg.val_set, cfg.image_size, cfg.data)
        keep = ~np.isin(np.array(val.alphabets)[val.alphabet], train.alphabets)
        if not keep.any():
            raise ValueError(f"train: every alphabet of val_set {cfg.val_set!r} is in train_set "
                             f"{cfg.train_set!r}; pick another val_set or use val_alphabets.")
        val = val.subset(keep, name=f"{val.name} minus {train.name}")
    elif cfg.val_alphabets:
        train, val = split_alphabets(train, cfg.val_alphabets, seed=cfg.seed)
    else:
        raise ValueError("train: set val_set or val_alphabets so validation uses alphabets not trained on.")
    return train, val


def _ways_and_sizes(val):
    """20 ways (fewer if no alphabet has 20 characters), and each alphabet's character count."""
    per_alphabet = np.bincount(val.character_alphabet, minlength=val.n_alphabets)
    return int(min(20, per_alphabet.max())), per_alphabet


def task_alphabets(val):
    """The alphabets that 20-way within-alphabet tasks can use (those with enough characters)."""
    ways, per_alphabet = _ways_and_sizes(val)
    return [a for a, n in zip(val.alphabets, per_alphabet) if n >= ways]


def validation_tasks(val, trials, seed):
    """Seeded 20-way within-alphabet tasks (fewer ways if no alphabet has 20 characters)."""
    ways, _ = _ways_and_sizes(val)
    return make_tasks(val, ways=ways, shots=1, trials=trials, within_alphabet=True, seed=seed)


def view_embeddings(net, images, views=1):
    """Embeddings of images (n, S, S) under the first ``views`` symmetries of the square: a list of (n, D)."""
    views = check_views(views, "view_embeddings")
    return [net.embed(np.ascontiguousarray(dihedral(images, t)[:, None], dtype=net.dtype)) for t in range(views)]


def embedding_accuracy(net, val, tasks, views=1, embeddings=None):
    """One-shot accuracy of ``net`` on ``tasks``, each image embedded once per view.

    With ``views`` > 1, p(same) is averaged over the pair seen under the first
    ``views`` symmetries of the square (as ``ModelScorer(net, views)`` does).
    ``embeddings`` (from ``view_embeddings``, at least ``views`` of them) skips
    the tower passes.
    """
    views = check_views(views, "embedding_accuracy")
    embs = (embeddings if embeddings is not None else view_embeddings(net, val.images, views))[:views]
    correct = np.zeros(len(tasks), np.int64)
    total = np.zeros(len(tasks), np.int64)
    for k, t in enumerate(tasks):
        p = sum(net.similarity_matrix(e[t.queries], e[t.support]) for e in embs) / views   # (T, ways * shots)
        pred = p.reshape(len(t.queries), t.ways, t.shots).max(axis=2).argmax(axis=1)
        correct[k], total[k] = (pred == t.query_labels).sum(), len(t.queries)
    return OneShotResult(correct, total, tasks[0].ways, tasks[0].shots)


# --------------------------------------------------------------------------- the trainer


@dataclass
class TrainState:
    """Counters saved with every checkpoint."""
    step: int = 0
    images: int = 0
    pairs: int = 0
    seconds: float = 0.0
    best_acc: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    loss_avg: float | None = None      # running averages shown in the progress bar and metrics
    acc_avg: float | None = None
    history: list = field(default_factory=list)


class NonFiniteLoss(RuntimeError):
    pass


def keep_freed_memory():
    """Ask glibc's allocator to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates and frees the same large arrays (activations,
    gradients) every time. By default glibc hands each freed block over a few
    MB back to the operating system, and the next step pays page faults to get
    it back: the tiny preset did 3,502 steps in its 259 s of training that
    way, 3,920 with this.
    Raising the mmap and trim thresholds keeps the blocks in the process. Only
    glibc (Linux) has ``mallopt``; elsewhere this does nothing. Returns True
    when it took effect.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 512 * 2**20) and libc.mallopt(M_TRIM_THRESHOLD, 2**30))


class Trainer:
    """Trains a SiameseNetwork as ``cfg`` says, writing everything into ``out``.

    Use ``Trainer(cfg).run()``; ``Trainer.resume(run_dir).run()`` continues.
    """

    def __init__(self, cfg, out=None, progress=True, train=None, val=None):
        check_views(cfg.test_views, "train: test_views")
        self.cfg = cfg
        self.progress = progress
        self.out = Path(out or cfg.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
        keep_freed_memory()
        t0 = time.perf_counter()
        if train is None:
            train, val = load_data(cfg)
        self.train, self.val = train, val
        self.load_seconds = time.perf_counter() - t0
        self.net = self._make_net()
        self.optimizer = self._make_optimizer()
        self.rng = np.random.default_rng(cfg.seed)
        if cfg.batch == "groups":
            if cfg.images_per_class < 2:
                raise ValueError(f"train: images_per_class must be >= 2 so that a batch holds 'same' pairs, "
                                 f"got {cfg.images_per_class}.")
            self.sampler = GroupSampler(train, cfg.classes_per_batch, cfg.images_per_class,
                                        same_alphabet=cfg.same_alphabet, symmetries=cfg.symmetries, rng=self.rng)
        elif cfg.batch == "pairs":
            self.sampler = PairSampler(train, hard_negative_fraction=cfg.hard_negatives, seed=cfg.seed)
            self.sampler.rng = self.rng  # one generator for everything: one state to save
        else:
            raise ValueError(f"train: batch must be 'groups' or 'pairs', got {cfg.batch!r}.")
        self.val_tasks = validation_tasks(val, cfg.val_trials, seed=cfg.seed + 1)
        self.state = TrainState()
        self.lr0 = cfg.lr

    def _make_net(self):
        c = self.cfg
        options = dict(widths=tuple(c.widths), embedding=c.embedding, activation=c.activation) if c.arch == "compact" else {}
        return SiameseNetwork(c.arch, image_size=c.image_size, init=c.init, dtype=np.float32, seed=c.seed, **options)

    def _make_optimizer(self):
        c = self.cfg
        params = list(self.net.named_parameters())
        if c.optimizer == "adam":
            return Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "sgd":
            return SGD(params, lr=c.lr, momentum=0.5 if c.schedule == "koch" else c.momentum,
                       weight_decay=c.weight_decay)
        raise ValueError(f"train: optimizer must be 'adam' or 'sgd', got {c.optimizer!r}.")

    # -- budget and schedule ----------------------------------------------------
    def progress_fraction(self):
        """Fraction of the budget used (the largest over the limits that are set)."""
        c, s = self.cfg, self.state
        parts = []
        if c.minutes:
            parts.append(s.seconds / (60 * c.minutes))
        if c.steps:
            parts.append(s.step / c.steps)
        if c.epochs:
            parts.append(s.images / (c.epochs * len(self.train)))
        if c.pairs:
            parts.append(s.pairs / c.pairs)
        if not parts:
            raise ValueError("train: set at least one budget: minutes, steps, epochs or pairs.")
        return max(parts)

    def apply_schedule(self):
        c, opt = self.cfg, self.optimizer
        if c.schedule == "cosine":
            opt.lr = cosine_learning_rate(self.lr0, self.progress_fraction(), warmup=c.warmup, floor=0.02)
        elif c.schedule == "koch":
            epoch = self.state.images / len(self.train)
            opt.lr = koch_learning_rate(self.lr0, int(epoch))
            if isinstance(opt, SGD):
                opt.momentum = koch_momentum(c.momentum, epoch, ramp_epochs=max(1.0, (c.epochs or 100) / 4))
        elif c.schedule != "constant":
            raise ValueError(f"train: schedule must be cosine, koch or constant, got {c.schedule!r}.")

    # -- one step -----------------------------------------------------------------
    def next_batch(self):
        """Images (B, 1, S, S) float32, pair indices, labels and weights for one step."""
        c = self.cfg
        symmetry = None
        if c.batch == "groups":
            idx, labels, symmetry = self.sampler.sample()
            left, right = np.triu_indices(idx.size, k=1)
            y = (labels[left] == labels[right]).astype(np.float32)
            n_same = y.sum()
            # the same pairs and the different pairs count half each
            weight = np.where(y == 1, 0.5 / n_same, 0.5 / (y.size - n_same)).astype(np.float32)
        else:
            i, j, y = self.sampler.sample(c.batch_pairs)
            idx = np.concatenate([i, j])
            left, right = np.arange(i.size), np.arange(i.size, 2 * i.size)
            weight = None
        x = self.train.images[idx]
        if symmetry is not None and symmetry.any():
            x = dihedral(x, symmetry)
        if c.distort > 0:
            x = distort_batch(np.ascontiguousarray(x, dtype=np.float32), self.rng, p=c.distort)
        return np.ascontiguousarray(x[:, None], dtype=np.float32), left, right, y, weight

    def step(self):
        x, left, right, y, weight = self.next_batch()
        self.apply_schedule()
        self.net.zero_grad()
        try:
            loss = self.net.pairs_loss_and_grad(x, left, right, y, weight)
        except NonFiniteError:
            # the batch is finite, so a layer refusing NaN/inf activations means training diverged
            raise NonFiniteLoss("inf/nan (the activations overflowed)") from None
        if not math.isfinite(loss):
            raise NonFiniteLoss(loss)
        self.optimizer.step()
        s = self.state
        s.step += 1
        s.images += x.shape[0]
        s.pairs += left.size
        logits = self.net.last_logits
        acc = float(((logits > 0) == (y > 0.5)).mean())
        return loss, acc, left.size

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint_extra(self):
        extra = {f"optim/{k}": v for k, v in self.optimizer.state_dict().items()}
        extra["state"] = np.array(json.dumps(asdict(self.state)))
        extra["rng"] = np.array(json.dumps(self.rng.bit_generator.state))
        extra["train_config"] = np.array(self.cfg.to_json())
        return extra

    def save(self, name):
        self.net.save(self.out / name, extra=self.checkpoint_extra())

    @classmethod
    def resume(cls, run_dir, progress=True, train=None, val=None):
        """A Trainer that continues the run in ``run_dir`` from its ``last.npz``."""
        run_dir = Path(run_dir)
        last = run_dir / "last.npz"
        if not last.is_file():
            raise FileNotFoundError(f"train --resume: {last} does not exist; is {run_dir} a run folder?")
        net, extra = SiameseNetwork.load(last, return_extra=True)
        cfg = TrainConfig.from_dict(json.loads(str(extra["train_config"])))
        trainer = cls(cfg, out=run_dir, progress=progress, train=train, val=val)
        trainer.net.load_state_dict(net.state_dict(), source=str(last))
        trainer.optimizer.load_state_dict({k[len("optim/"):]: v for k, v in extra.items() if k.startswith("optim/")})
        trainer.state = TrainState(**json.loads(str(extra["state"])))
        trainer.rng.bit_generator.state = json.loads(str(extra["rng"]))
        return trainer

    # -- validation and logging ---------------------------------------------------
    def validate(self):
        return embedding_accuracy(self.net, self.val, self.val_tasks).accuracy

    def log_row(self, loss, acc, val_acc):
        s = self.state
        row = {"step": s.step, "pairs": s.pairs, "loss": round(loss, 6), "train_acc": round(acc, 4),
               "val_acc": "" if val_acc is None else round(val_acc, 4), "lr": f"{self.optimizer.lr:.3g}",
               "seconds": round(s.seconds, 2)}
        s.history.append(row)
        return row

    def write_metrics(self):
        with open(self.out / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step", "pairs", "loss", "train_acc", "val_acc", "lr", "seconds"])
            w.writeheader()
            w.writerows(self.state.history)

    # -- the loop -----------------------------------------------------------------
    def run(self):
        """Train until the budget is spent (or early stopping); returns the TrainState.

        ``seconds`` counts the whole loop (steps, validations, checkpoints), so
        a ``minutes`` budget is wall-clock time. Ctrl-C saves ``last.npz`` at
        the last completed step and re-raises.
        """
        c, s = self.cfg, self.state
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(c.to_json())
        bar = tqdm(total=100, desc="train", unit="%", disable=not self.progress,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}<{remaining}{postfix}]")
        t_shown, pairs_shown = time.perf_counter(), s.pairs
        rng_before, in_step = self.rng.bit_generator.state, False
        try:
            while self.progress_fraction() < 1.0:
                t0 = time.perf_counter()
                rng_before, in_step = self.rng.bit_generator.state, True
                try:
                    loss, acc, _ = self.step()
                except NonFiniteLoss as e:
                    self.write_metrics()
                    raise RuntimeError(
                        f"train: the loss became {e.args[0]} at step {s.step + 1}; the learning rate "
                        f"(lr={self.optimizer.lr:.3g}) is probably too high: lower --lr. The last good "
                        f"checkpoint is {self.out / 'last.npz'} (step {self._saved_step()}).") from None
                in_step = False
                s.loss_avg = loss if s.loss_avg is None else 0.95 * s.loss_avg + 0.05 * loss
                s.acc_avg = acc if s.acc_avg is None else 0.95 * s.acc_avg + 0.05 * acc
                val_acc = None
                s.seconds += time.perf_counter() - t0
                if s.step % c.val_every == 0 or self.progress_fraction() >= 1.0:
                    t0 = time.perf_counter()
                    val_acc = self.validate()
                    if val_acc > s.best_acc:
                        s.best_acc, s.best_step, s.bad_validations = val_acc, s.step, 0
                        self.save("best.npz")
                    else:
                        s.bad_validations += 1
                    s.seconds += time.perf_counter() - t0
                row = self.log_row(s.loss_avg, s.acc_avg, val_acc)
                if val_acc is not None:
                    self.save("last.npz")
                    self.write_metrics()
                    if c.patience and s.bad_validations >= c.patience:
                        tqdm.write(f"early stopping: no better validation accuracy for {c.patience} validations")
                        break
                now = time.perf_counter()
                if now - t_shown > 1.0 or val_acc is not None:
                    rate = (s.pairs - pairs_shown) / (now - t_shown)
                    t_shown, pairs_shown = now, s.pairs
                    bar.n = min(100.0, 100 * self.progress_fraction())
                    bar.set_postfix_str(f"loss {row['loss']:.3f} acc {row['train_acc']:.2f} "
                                        f"best val {'n/a' if s.best_acc < 0 else f'{s.best_acc:.3f}'} {rate:,.0f} pairs/s", refresh=True)
        except KeyboardInterrupt:
            # weights, optimiser and counters are those of the last completed step; so must the rng be
            if in_step:
                self.rng.bit_generator.state = rng_before
            self.save("last.npz")
            self.write_metrics()
            bar.close()
            raise
        bar.close()
        if not (s.history and s.history[-1]["val_acc"] != ""):  # not saved at this very step already
            self.save("last.npz")
        self.write_metrics()
        return s

    def _saved_step(self):
        try:
            _, extra = SiameseNetwork.load(self.out / "last.npz", return_extra=True)
            return json.loads(str(extra["state"]))["step"]
        except (FileNotFoundError, ValueError):
            return "none yet"
