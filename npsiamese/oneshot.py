"""N-way k-shot evaluation: task lists, Lake's 20-run benchmark, scorers, confidence intervals.

A one-shot *task* shows ``ways`` new characters, ``shots`` images each (the
support set), and asks which of them each query image shows. Lake et al.
(2015) and Koch et al. (2015) draw the characters of a task from one alphabet
and two drawers: one drawer's images form the support set, the other's are the
queries ("within-alphabet"); "unstructured" tasks take characters from any
alphabet.

Anything with a ``score`` method is a *scorer*::

    score(queries (T, S, S) float32, support (W, S, S) float32) -> (T, W) float
    # similarity, higher = more alike

Each query goes to the class of its best-scoring support image (1-nearest
neighbour over the ``shots`` images of each class). :mod:`npsiamese.baselines`
holds the pixel and MHD scorers; :class:`ModelScorer` wraps a trained
``SiameseNetwork``.
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ._checks import check_array, check_positive_int
from .omniglot import DataError, DataNotFoundError, NATIVE_SIZE, data_dir, decode_png, downsample


# --------------------------------------------------------------------------- scorers

VIEWS = (1, 4, 8)   # test-time views: none, the 4 quarter turns, all 8 symmetries of the square


def check_views(views, where):
    """``views`` must be 1, 4 or 8 (the first ``views`` symmetries of :func:`npsiamese.augment.dihedral`)."""
    if isinstance(views, bool) or views not in VIEWS:
        raise ValueError(f"{where}: views must be 1 (plain), 4 (quarter turns) or 8 (turns and mirror "
                         f"images), got {views!r}.")
    return int(views)


class ModelScorer:
    """Adapter: a Siamese network as a scorer.

    Each image goes through the tower once per view (``net.embed``); the
    similarity head then runs on every (query, support) pair of embeddings.

    With ``views`` > 1 the pair is also scored with both images turned (and
    mirrored) the same way, ``dihedral(x, t)`` for t < views, and the ``views``
    probabilities are averaged. A network trained with ``symmetries=8`` has
    learned turned characters as characters of their own, so each view is a
    fair, slightly different look at the same pair; averaging them is a
    test-time ensemble (the README gives the gain for the presets).

    Parameters
    ----------
    net : object
        Needs ``image_size`` (int), ``embed(x (N, 1, S, S)) -> (N, D)`` and
        ``similarity_from_embeddings(e1 (M, D), e2 (M, D)) -> (M,)``
        probabilities, as :class:`npsiamese.network.SiameseNetwork` offers.
    views : 1, 4 or 8
    """

    name = "model"

    def __init__(self, net, views=1):
        missing = [a for a in ("image_size", "embed", "similarity_from_embeddings") if not hasattr(net, a)]
        if missing:
            raise TypeError(f"ModelScorer: {type(net).__name__} lacks {', '.join(missing)}; pass a "
                            f"SiameseNetwork (or an object with the same methods).")
        self.net = net
        self.image_size = int(net.image_size)
        self.views = check_views(views, "ModelScorer")

    @classmethod
    def from_checkpoint(cls, path, views=None):
        """Load ``SiameseNetwork.load(path)`` and wrap it.

        ``views=None`` takes the views the checkpoint's training run
        evaluates with (``test_views`` in its saved config; 1 if none).
        """
        try:
            from .network import SiameseNetwork  # imported here: the network module is optional for data work
        except ImportError as err:
            raise ImportError(f"ModelScorer: cannot import npsiamese.network ({err}); evaluating a "
                              f"checkpoint needs it. Use --baseline pixel|mhd meanwhile.") from None
        if not Path(path).exists():
            raise DataNotFoundError(f"ModelScorer: checkpoint {path} does not exist.")
        net, extra = SiameseNetwork.load(path, return_extra=True)
        if views is None:
            views = checkpoint_test_views(extra)
        return cls(net, views=views)

    def score(self, queries, support):
        """(T, S, S), (W, S, S) float32 -> (T, W) same-character probabilities (mean over the views)."""
        from .augment import dihedral  # imports Numba: only when scoring with a model
        size = (None, self.image_size, self.image_size)
        check_array(queries, "ModelScorer.score", "queries", ndim=3, shape=size)
        check_array(support, "ModelScorer.score", "support", ndim=3, shape=size)
        dtype = getattr(self.net, "dtype", np.float32)   # the network checks its input dtype
        n_q, n_s = queries.shape[0], support.shape[0]
        p = np.zeros((n_q, n_s))
        for t in range(self.views):
            e_q = self.net.embed(dihedral(queries, t)[:, None].astype(dtype, copy=False))   # (T, D)
            e_s = self.net.embed(dihedral(support, t)[:, None].astype(dtype, copy=False))   # (W, D)
            # all pairs: query t meets support w at row t * W + w
            p_t = self.net.similarity_from_embeddings(np.repeat(e_q, n_s, axis=0), np.tile(e_s, (n_q, 1)))
            p += np.asarray(p_t, dtype=np.float64).reshape(n_q, n_s)
        return p / self.views


def checkpoint_test_views(extra):
    """The ``test_views`` of the training run that wrote a checkpoint (``extra`` from ``SiameseNetwork.load``)."""
    if "train_config" not in extra:
        return 1
    return int(json.loads(str(extra["train_config"])).get("test_views", 1))


def predict(scorer, queries, support, ways, shots):
    """Class of each query: the class of its best-scoring support image.

    ``support`` is class-major: image ``c * shots + s`` is shot ``s`` of class ``c``.
    Returns an int array (T,) with values in ``0 .. ways-1``.
    """
    scores = np.asarray(scorer.score(queries, support))
    if scores.shape != (len(queries), ways * shots):
        raise ValueError(f"predict: {type(scorer).__name__}.score returned shape {scores.shape}, expected "
                         f"(n_queries, n_support) = ({len(queries)}, {ways * shots}).")
    return scores.reshape(len(queries), ways, shots).max(axis=2).argmax(axis=1)


# --------------------------------------------------------------------------- results

def wilson_interval(successes, n, z=1.96):
    """Wilson score interval for a binomial proportion (95% for z = 1.96)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def accuracy_ci95(correct, total):
    """95% interval for the accuracy of a list of tasks (normal approximation over tasks).

    The queries of one task share its characters, so they are not
    independent; the tasks are. With ``a_k = correct_k / total_k`` the interval
    is ``mean(a) +- 1.96 * std(a) / sqrt(n_tasks)``, clipped to [0, 1] (for
    equal-sized tasks ``mean(a)`` is the pooled accuracy). With a single task
    it falls back to the Wilson interval of its queries.
    """
    correct, total = np.asarray(correct, float), np.asarray(total, float)
    if correct.size < 2:
        return wilson_interval(correct.sum(), total.sum())
    acc = correct / total
    half = 1.96 * acc.std(ddof=1) / np.sqrt(acc.size)
    return (float(max(0.0, acc.mean() - half)), float(min(1.0, acc.mean() + half)))


@dataclass
class OneShotResult:
    """Per-task outcome of an evaluation.

    Attributes
    ----------
    correct, total : numpy.ndarray, shape (n_tasks,), int
        Correct and total queries per task (or per Lake run).
    ways, shots : int
    names : list of str
        Run names for Lake's benchmark (``"run01"`` ...), else empty.
    """

    correct: np.ndarray
    total: np.ndarray
    ways: int
    shots: int
    names: list = field(default_factory=list)

    @property
    def trials(self):
        """Number of tasks (episodes)."""
        return len(self.correct)

    @property
    def accuracy(self):
        """Fraction of all queries classified correctly."""
        return float(self.correct.sum() / self.total.sum())

    @property
    def errors(self):
        """Per-task error fraction, shape (n_tasks,)."""
        return 1.0 - self.correct / self.total

    @property
    def ci95(self):
        """See :func:`accuracy_ci95`."""
        return accuracy_ci95(self.correct, self.total)


# --------------------------------------------------------------------------- task lists

@dataclass(frozen=True)
class Task:
    """One N-way k-shot task as image indices into a dataset.

    ``support`` (ways * shots,) is class-major (class ``c`` owns entries
    ``c*shots .. c*shots+shots-1``); ``queries`` (n_queries,) with their true
    classes ``query_labels`` in ``0 .. ways-1``.
    """

    support: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    ways: int
    shots: int


def make_tasks(dataset, ways=20, shots=1, trials=400, within_alphabet=False, seed=0):
    """A seeded, reproducible list of N-way k-shot tasks.

    Each task picks ``ways`` characters (from one random alphabet when
    ``within_alphabet``, Lake's and Koch's protocol; else from the whole set),
    then ``shots + 1`` distinct drawers that drew all of them: ``shots``
    drawers give the support images, the last one the ``ways`` queries (one
    per class). The defaults match ``npsiamese evaluate --data``.

    Returns
    -------
    list of Task
        ``trials`` tasks; the same arguments give the same list.
    """
    where = "make_tasks"
    ways = check_positive_int(ways, where, "ways", minimum=2)
    shots = check_positive_int(shots, where, "shots")
    trials = check_positive_int(trials, where, "trials")
    rng = np.random.default_rng(seed)
    # lookup[c, d] = index of the image of character c by drawer d, or -1
    lookup = np.full((dataset.n_characters, int(dataset.drawer.max()) + 1), -1, dtype=np.int64)
    lookup[dataset.character, dataset.drawer] = np.arange(len(dataset))
    if within_alphabet:
        per_alphabet = np.bincount(dataset.character_alphabet, minlength=dataset.n_alphabets)
        eligible = np.flatnonzero(per_alphabet >= ways)
        if eligible.size == 0:
            big = int(per_alphabet.argmax())
            raise ValueError(f"{where}: within-alphabet {ways}-way tasks need an alphabet with at least "
                             f"{ways} characters; the largest here, {dataset.alphabets[big]}, has "
                             f"{per_alphabet[big]}. Lower ways or use unstructured tasks.")
    elif dataset.n_characters < ways:
        raise ValueError(f"{where}: {ways}-way tasks need {ways} characters, "
                         f"the set has {dataset.n_characters}.")
    tasks = []
    for _ in range(trials):
        if within_alphabet:
            pool = np.flatnonzero(dataset.character_alphabet == rng.choice(eligible))
        else:
            pool = np.arange(dataset.n_characters)
        chars = rng.choice(pool, size=ways, replace=False)
        common = np.flatnonzero((lookup[chars] >= 0).all(axis=0))   # drawers who drew every character
        if common.size < shots + 1:
            raise ValueError(f"{where}: only {common.size} drawer(s) drew all {ways} characters of a "
                             f"task; {shots}-shot tasks need {shots + 1}. Use a set with more drawers "
                             f"per character.")
        drawers = rng.choice(common, size=shots + 1, replace=False)
        tasks.append(Task(support=lookup[chars][:, drawers[:shots]].ravel(),
                          queries=lookup[chars, drawers[shots]], query_labels=np.arange(ways),
                          ways=ways, shots=shots))
    return tasks


def evaluate_tasks(scorer, images, tasks, progress=False):
    """Run ``scorer`` on every task; ``images`` (n, S, S) float32 is what the task indices point into.

    Returns
    -------
    OneShotResult
    """
    check_array(images, "evaluate_tasks", "images", ndim=3, finite=False)
    if not tasks:
        raise ValueError("evaluate_tasks: the task list is empty; build one with make_tasks(...).")
    correct, total = [], []
    for task in tqdm(tasks, desc="tasks", disable=not progress, leave=False):
        pred = predict(scorer, np.ascontiguousarray(images[task.queries]),
                       np.ascontiguousarray(images[task.support]), task.ways, task.shots)
        correct.append(int((pred == task.query_labels).sum()))
        total.append(len(task.queries))
    return OneShotResult(np.array(correct), np.array(total), tasks[0].ways, tasks[0].shots)


# --------------------------------------------------------------------------- Lake's 20 runs

@dataclass
class LakeRun:
    """One run of Lake's benchmark.

    ``training`` (W, S, S): the one image per class, in file-name order;
    ``test`` (T, S, S): the query items in ``class_labels.txt`` order;
    ``answers`` (T,): index into ``training`` of each test item's class.
    """

    name: str
    training: np.ndarray
    test: np.ndarray
    answers: np.ndarray


_LABELS = re.compile(r"(?:^|/)(run\d+)/class_labels\.txt$")


def resolve_lake_runs(path_or_name, search_dir=None):
    """The zip or folder of Lake's runs: a path, or ``"runs"`` looked up in :func:`data_dir`."""
    if str(path_or_name) == "runs":
        folder = data_dir(search_dir)
        for candidate in (folder / "all_runs.zip", folder / "all_runs"):
            if candidate.exists():
                return candidate
        raise DataNotFoundError(f"load_lake_runs: Lake's benchmark not found: looked for all_runs.zip and "
                                f"all_runs/ in {folder}. Put it there or run `npsiamese data download runs`.")
    path = Path(path_or_name).expanduser()
    if not path.exists():
        raise DataNotFoundError(f"load_lake_runs: no such file or folder: {path}. Pass all_runs.zip or the "
                                f"folder it extracts to (runNN/class_labels.txt ...).")
    return path


def _runs_files(path):
    """``(member names, read(member) -> bytes, open zip or None)`` for a zip or a folder."""
    if path.is_dir():
        members = sorted(p.relative_to(path).as_posix() for p in path.rglob("class_labels.txt"))
        return members, lambda m: (path / m).read_bytes(), None
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"load_lake_runs: {path} is not a readable zip ({err}); delete it and run "
                        f"`npsiamese data download runs`.") from None
    members = sorted(m for m in zf.namelist() if "__MACOSX" not in m)
    return members, zf.read, zf


def load_lake_runs(path_or_name="runs", image_size=NATIVE_SIZE, data_dir=None):
    """Read Lake's one-shot benchmark (``all_runs.zip`` or its folder).

    Layout: ``runNN/class_labels.txt`` (lines ``runNN/test/itemMM.png
    runNN/training/classKK.png``), ``runNN/training/classKK.png``,
    ``runNN/test/itemMM.png``, optionally under one top folder.

    Returns
    -------
    list of LakeRun
        Sorted by run name; images float32, ink = 1, ``image_size`` pixels.
    """
    path = resolve_lake_runs(path_or_name, data_dir)
    members, read, zf = _runs_files(path)
    runs = []
    try:
        label_files = [(m, _LABELS.search(m)) for m in members]
        label_files = [(m, match) for m, match in label_files if match]
        if not label_files:
            raise DataError(f"load_lake_runs: {path} holds no runNN/class_labels.txt; expected Lake's "
                            f"all_runs.zip layout.")
        for member, match in label_files:
            prefix = member[:match.start(1)]
            lines = [ln.split() for ln in read(member).decode().splitlines() if ln.strip()]
            if any(len(ln) != 2 for ln in lines):
                raise DataError(f"load_lake_runs: {path}: {member} must hold lines "
                                f"'test_file training_file'.")
            train_files = sorted({ln[1] for ln in lines})

            def load(rel):
                try:
                    data = read(prefix + rel)
                except (KeyError, FileNotFoundError):
                    raise DataError(f"load_lake_runs: {path}: {member} names {rel}, "
                                    f"which is missing.") from None
                return decode_png(data, f"{path}: {prefix + rel}", where="load_lake_runs")

            training = downsample(np.stack([load(f) for f in train_files]), image_size)
            test = downsample(np.stack([load(ln[0]) for ln in lines]), image_size)
            answers = np.array([train_files.index(ln[1]) for ln in lines])
            runs.append(LakeRun(match.group(1), training, test, answers))
    finally:
        if zf is not None:
            zf.close()
    return sorted(runs, key=lambda r: r.name)


def evaluate_lake_runs(scorer, runs, progress=False):
    """Classify every test item of every run against the run's training images.

    Returns
    -------
    OneShotResult
        One entry per run (``names``); ``errors`` are Lake's per-run error
        rates as fractions (Lake's MHD demo: mean 0.388).
    """
    correct, total = [], []
    for run in tqdm(runs, desc="runs", disable=not progress, leave=False):
        pred = predict(scorer, run.test, run.training, len(run.training), 1)
        correct.append(int((pred == run.answers).sum()))
        total.append(len(run.answers))
    return OneShotResult(np.array(correct), np.array(total), len(runs[0].training), 1,
                         names=[r.name for r in runs])
