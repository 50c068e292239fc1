"""One-shot tasks, scorers, confidence intervals and Lake's 20-run benchmark reader."""
import sys
import types
import zipfile

import numpy as np
import pytest

from npsiamese.baselines import MHDScorer
from npsiamese.omniglot import DataError, DataNotFoundError, Omniglot
from npsiamese.oneshot import (ModelScorer, accuracy_ci95, evaluate_lake_runs, evaluate_tasks, load_lake_runs,
                               make_tasks, predict, wilson_interval)

from conftest import build_lake_runs


def labelled_dataset(chars_per_alphabet=(25, 22, 10), n_drawers=20, size=4):
    """Every image is filled with its character id + 1, so a scorer can 'recognise' characters."""
    character_alphabet = np.repeat(np.arange(len(chars_per_alphabet)), chars_per_alphabet)
    n_chars = character_alphabet.size
    character = np.repeat(np.arange(n_chars), n_drawers)
    images = np.ones((character.size, size, size), np.float32) * (character + 1.0)[:, None, None]
    return Omniglot(images, character_alphabet[character], character, np.tile(np.arange(n_drawers), n_chars),
                    [f"A{k}" for k in range(len(chars_per_alphabet))], [f"c{k}" for k in range(n_chars)],
                    character_alphabet)


class OracleScorer:
    """Knows that pixel value = character id: similarity = -|difference|."""

    def score(self, queries, support):
        return -np.abs(queries.mean((1, 2))[:, None] - support.mean((1, 2))[None, :])


class ConstantScorer:
    """Sees nothing: every support image scores the same."""

    def score(self, queries, support):
        return np.zeros((len(queries), len(support)))


@pytest.fixture(scope="module")
def dataset():
    return labelled_dataset()


# --------------------------------------------------------------------------- task lists

def test_within_alphabet_tasks_follow_lakes_protocol(dataset):
    tasks = make_tasks(dataset, ways=20, shots=1, trials=30, within_alphabet=True, seed=0)
    assert len(tasks) == 30
    for t in tasks:
        chars = dataset.character[t.support]
        assert len(set(chars)) == 20 and len(set(dataset.alphabet[t.support])) == 1
        assert dataset.alphabet[t.support[0]] in (0, 1)                    # alphabet 2 has only 10 characters
        assert len(set(dataset.drawer[t.support])) == 1 and len(set(dataset.drawer[t.queries])) == 1
        assert dataset.drawer[t.support[0]] != dataset.drawer[t.queries[0]]   # two different drawers
        assert np.array_equal(dataset.character[t.queries], chars[t.query_labels])


def test_k_shot_support_is_class_major(dataset):
    for t in make_tasks(dataset, ways=5, shots=3, trials=10, within_alphabet=False, seed=1):
        chars = dataset.character[t.support].reshape(5, 3)
        assert (chars == chars[:, :1]).all()                                  # 3 shots of one class per row
        assert len(set(dataset.drawer[t.support].reshape(5, 3)[0])) == 3
        assert dataset.drawer[t.queries[0]] not in dataset.drawer[t.support]
        assert np.array_equal(dataset.character[t.queries], chars[t.query_labels, 0])


def test_unstructured_tasks_mix_alphabets(dataset):
    tasks = make_tasks(dataset, ways=10, trials=20, within_alphabet=False, seed=2)
    assert any(len(set(dataset.alphabet[t.support])) > 1 for t in tasks)


def test_task_lists_are_reproducible(dataset):
    a = make_tasks(dataset, ways=5, trials=5, seed=4)
    b = make_tasks(dataset, ways=5, trials=5, seed=4)
    c = make_tasks(dataset, ways=5, trials=5, seed=5)
    same = lambda x, y: all(np.array_equal(s.support, t.support) and np.array_equal(s.queries, t.queries)
                            for s, t in zip(x, y))
    assert same(a, b) and not same(a, c)


def test_task_errors(dataset):
    with pytest.raises(ValueError, match="at least 30 characters; the largest here, A0, has 25"):
        make_tasks(dataset, ways=30, within_alphabet=True)
    with pytest.raises(ValueError, match="need 80 characters"):
        make_tasks(dataset, ways=80, within_alphabet=False)
    with pytest.raises(ValueError, match="21-shot tasks need 22"):
        make_tasks(dataset, ways=2, shots=21)
    with pytest.raises(ValueError, match="make_tasks: ways must be >= 2"):
        make_tasks(dataset, ways=1)


# --------------------------------------------------------------------------- evaluation

def test_oracle_is_perfect_and_blind_scorer_is_at_chance(dataset):
    tasks = make_tasks(dataset, ways=20, trials=40, within_alphabet=True, seed=0)
    perfect = evaluate_tasks(OracleScorer(), dataset.images, tasks)
    assert perfect.accuracy == 1.0 and perfect.trials == 40 and perfect.ways == 20
    assert perfect.total.tolist() == [20] * 40
    blind = evaluate_tasks(ConstantScorer(), dataset.images, tasks)
    assert blind.accuracy == pytest.approx(1 / 20)         # ties -> class 0 -> one hit per task


def test_predict_takes_the_best_shot_of_each_class():
    class Fixed:
        def score(self, queries, support):
            return np.array([[0.1, 0.9, 0.5, 0.2, 0.3, 0.4]])             # class 0 = 0.1, 0.9; class 1 ...
    assert predict(Fixed(), np.zeros((1, 2, 2), np.float32), np.zeros((6, 2, 2), np.float32), 3, 2)[0] == 0

    class WrongShape:
        def score(self, queries, support):
            return np.zeros((len(support), len(queries)))
    with pytest.raises(ValueError, match=r"WrongShape.score returned shape \(6, 1\), expected"):
        predict(WrongShape(), np.zeros((1, 2, 2), np.float32), np.zeros((6, 2, 2), np.float32), 6, 1)


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(400, 400)[1] == pytest.approx(1.0)


def test_accuracy_ci_is_normal_approximation_over_tasks():
    correct, total = np.array([18, 16, 20, 14]), np.array([20, 20, 20, 20])
    acc = correct / total
    half = 1.96 * acc.std(ddof=1) / 2
    assert accuracy_ci95(correct, total) == pytest.approx((acc.mean() - half, acc.mean() + half))
    assert accuracy_ci95([20, 20], [20, 20]) == (1.0, 1.0)
    assert accuracy_ci95([3], [10]) == wilson_interval(3, 10)


# --------------------------------------------------------------------------- model adapter

class FakeNet:
    """Embedding = mean ink; similarity = exp(-|e1 - e2|). Records what it was given."""

    image_size = 6

    def __init__(self):
        self.embed_shapes = []

    def embed(self, x):
        self.embed_shapes.append(x.shape)
        return x.mean(axis=(1, 2, 3))[:, None] * np.array([[1.0, 2.0]])

    def similarity_from_embeddings(self, e1, e2):
        assert e1.shape == e2.shape
        return np.exp(-np.abs(e1 - e2).sum(1))

    @classmethod
    def load(cls, path, return_extra=False):
        return (cls(), {}) if return_extra else cls()


def test_model_scorer_embeds_each_image_once_and_scores_all_pairs():
    rng = np.random.default_rng(0)
    q, s = rng.random((3, 6, 6), dtype=np.float32), rng.random((5, 6, 6), dtype=np.float32)
    net = FakeNet()
    scores = ModelScorer(net).score(q, s)
    assert net.embed_shapes == [(3, 1, 6, 6), (5, 1, 6, 6)]
    expected = np.exp(-3 * np.abs(q.mean((1, 2))[:, None] - s.mean((1, 2))[None, :]))
    assert scores.shape == (3, 5) and np.allclose(scores, expected)


def test_model_scorer_views_average_the_pair_turned_and_mirrored_alike():
    from npsiamese.augment import dihedral
    network = pytest.importorskip("npsiamese.network")
    net = network.SiameseNetwork("compact", image_size=12, widths=(4,), embedding=8, seed=0)
    rng = np.random.default_rng(1)
    q = (rng.random((2, 12, 12)) < 0.3).astype(np.float32)
    s = (rng.random((3, 12, 12)) < 0.3).astype(np.float32)
    plain = ModelScorer(net)
    for views in (4, 8):
        expected = np.mean([plain.score(dihedral(q, t), dihedral(s, t)) for t in range(views)], axis=0)
        got = ModelScorer(net, views=views).score(q, s)
        assert got.shape == (2, 3) and np.allclose(got, expected, atol=1e-7)
    # negative control: the untrained net is not symmetric, so the views do change the scores
    assert not np.allclose(ModelScorer(net, views=8).score(q, s), plain.score(q, s), atol=1e-4)
    fake = FakeNet()
    ModelScorer(fake, views=4).score(np.ascontiguousarray(q[:, :6, :6]), np.ascontiguousarray(s[:, :6, :6]))
    assert len(fake.embed_shapes) == 8                     # queries and support, once per view
    for bad in (0, 2, 3, 9, True, "8"):
        with pytest.raises(ValueError, match="ModelScorer: views must be 1 .*, 4 .* or 8"):
            ModelScorer(FakeNet(), views=bad)


def test_model_scorer_checks(tmp_path):
    with pytest.raises(TypeError, match="ModelScorer: object lacks image_size, embed"):
        ModelScorer(object())
    with pytest.raises(ValueError, match=r"ModelScorer.score: queries must have shape \(\*, 6, 6\)"):
        ModelScorer(FakeNet()).score(np.zeros((2, 5, 5), np.float32), np.zeros((2, 6, 6), np.float32))


def test_model_scorer_from_checkpoint_imports_the_network_lazily(tmp_path, monkeypatch):
    module = types.ModuleType("npsiamese.network")
    module.SiameseNetwork = FakeNet
    monkeypatch.setitem(sys.modules, "npsiamese.network", module)
    ckpt = tmp_path / "model.npz"
    ckpt.write_bytes(b"")
    assert isinstance(ModelScorer.from_checkpoint(ckpt).net, FakeNet)
    with pytest.raises(DataNotFoundError, match="checkpoint .* does not exist"):
        ModelScorer.from_checkpoint(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- Lake's runs

def _expected_answers(path, run):
    """Read class_labels.txt directly: the training class number of every test item."""
    with zipfile.ZipFile(path) as zf:
        lines = zf.read(f"{run}/class_labels.txt").decode().split("\n")
    return [int(line.split()[1][-6:-4]) - 1 for line in lines if line]


def test_lake_runs_from_zip(lake_runs_zip):
    runs = load_lake_runs(lake_runs_zip)
    assert [r.name for r in runs] == ["run01", "run02", "run03"]
    for r in runs:
        assert r.training.shape == r.test.shape == (20, 105, 105) and r.training.dtype == np.float32
        assert r.answers.tolist() == _expected_answers(lake_runs_zip, r.name)
        assert sorted(r.answers.tolist()) == list(range(20))


def test_lake_runs_from_folder_and_with_a_top_folder(lake_runs_folder, tmp_path):
    assert len(load_lake_runs(lake_runs_folder, image_size=35)) == 2
    assert load_lake_runs(lake_runs_folder, image_size=35)[0].test.shape == (20, 35, 35)
    prefixed = build_lake_runs(tmp_path, n_runs=1, ways=5, prefix="all_runs/")
    (run,) = load_lake_runs(prefixed)
    assert run.name == "run01" and run.training.shape == (5, 105, 105)


def test_lake_runs_mhd_recognises_synthetic_characters(lake_runs_zip):
    result = evaluate_lake_runs(MHDScorer(), load_lake_runs(lake_runs_zip))
    assert result.names == ["run01", "run02", "run03"] and result.ways == 20
    assert result.accuracy >= 0.9 and result.errors.shape == (3,)
    assert np.allclose(result.errors, 1 - result.correct / 20)
    # negative control: a scorer that sees nothing cannot find the (shuffled) answers
    blind = evaluate_lake_runs(ConstantScorer(), load_lake_runs(lake_runs_zip))
    assert blind.accuracy <= 0.15


def test_lake_runs_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="npsiamese data download runs"):
        load_lake_runs("runs", data_dir=tmp_path)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("run01/class_labels.txt", "run01/test/item01.png run01/training/class01.png\n")
    with pytest.raises(DataError, match="labels.txt names run01/training/class01.png, which is missing"):
        load_lake_runs(bad)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("hello.txt", "")
    with pytest.raises(DataError, match="no runNN/class_labels.txt"):
        load_lake_runs(tmp_path / "empty.zip")
    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable zip"):
        load_lake_runs(tmp_path / "junk.zip")


def test_model_scorer_casts_to_the_network_dtype():
    class Float64Net(FakeNet):
        dtype = np.dtype(np.float64)

        def embed(self, x):
            assert x.dtype == np.float64 and x.flags.c_contiguous
            return super().embed(x)
    scores = ModelScorer(Float64Net()).score(np.ones((2, 6, 6), np.float32), np.ones((3, 6, 6), np.float32))
    assert np.allclose(scores, 1.0)


def test_model_scorer_agrees_with_the_real_network_on_explicit_pairs():
    """Integration check with npsiamese.network (skipped until it imports)."""
    network = pytest.importorskip("npsiamese.network")
    net = network.SiameseNetwork("compact", seed=0)
    size = net.image_size
    rng = np.random.default_rng(0)
    q = (rng.random((2, size, size)) < 0.2).astype(np.float32)
    s = (rng.random((3, size, size)) < 0.2).astype(np.float32)
    scores = ModelScorer(net).score(q, s)
    pairs = net.predict(np.repeat(q, 3, axis=0)[:, None], np.tile(s, (2, 1, 1))[:, None])
    assert scores.shape == (2, 3) and np.allclose(scores.ravel(), pairs, atol=1e-6)
