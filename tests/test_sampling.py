"""Alphabet and drawer splits; balanced, seeded same/different pairs with hard negatives."""
import numpy as np
import pytest

from npsiamese.omniglot import Omniglot
from npsiamese.sampling import GroupSampler, PairSampler, split_alphabets, split_drawers


def make_dataset(chars_per_alphabet=(6, 5, 4, 3), n_drawers=20):
    """Labels only (images are 1x1): enough for splits and pair sampling."""
    character_alphabet = np.repeat(np.arange(len(chars_per_alphabet)), chars_per_alphabet)
    n_chars = character_alphabet.size
    character = np.repeat(np.arange(n_chars), n_drawers)
    drawer = np.tile(np.arange(n_drawers), n_chars)
    images = np.zeros((character.size, 1, 1), np.float32)
    return Omniglot(images, character_alphabet[character], character, drawer,
                    [f"A{k}" for k in range(len(chars_per_alphabet))], [f"c{k}" for k in range(n_chars)],
                    character_alphabet)


@pytest.fixture
def dataset():
    return make_dataset()


# --------------------------------------------------------------------------- splits

def test_split_alphabets_is_disjoint_complete_and_seeded(dataset):
    train, val = split_alphabets(dataset, n_val=1, seed=3)
    assert len(train) + len(val) == len(dataset)
    assert set(train.alphabets).isdisjoint(val.alphabets) and len(val.alphabets) == 1
    assert sorted(train.alphabets + val.alphabets) == sorted(dataset.alphabets)
    again = split_alphabets(dataset, n_val=1, seed=3)[1]
    assert again.alphabets == val.alphabets
    picked = {tuple(split_alphabets(dataset, n_val=2, seed=s)[1].alphabets) for s in range(10)}
    assert len(picked) > 1                                   # the seed matters


@pytest.mark.parametrize("n_val", [0, 4, 9])
def test_split_alphabets_rejects_impossible_sizes(dataset, n_val):
    with pytest.raises(ValueError, match="split_alphabets: n_val"):
        split_alphabets(dataset, n_val=n_val)


def test_split_drawers_follows_koch(dataset):
    train, val, test = split_drawers(dataset, seed=1)
    drawers = [set(np.unique(part.drawer)) for part in (train, val, test)]
    assert [len(d) for d in drawers] == [12, 4, 4]
    assert drawers[0].isdisjoint(drawers[1]) and drawers[1].isdisjoint(drawers[2])
    assert set().union(*drawers) == set(range(20))
    assert train.characters == val.characters == test.characters       # same characters everywhere
    assert len(train) == 12 * dataset.n_characters
    assert set(np.unique(split_drawers(dataset, seed=1)[0].drawer)) == drawers[0]


def test_split_drawers_rejects_too_many(dataset):
    with pytest.raises(ValueError, match="only 20 drawers"):
        split_drawers(dataset, n_train=18, n_val=4)


# --------------------------------------------------------------------------- pairs

def test_pairs_are_balanced_and_labelled_correctly(dataset):
    i, j, y = PairSampler(dataset, seed=0).sample(2000)
    assert i.shape == j.shape == y.shape == (2000,) and y.dtype == np.float32
    assert y.sum() == 1000                                            # exactly balanced
    same = dataset.character[i] == dataset.character[j]
    assert np.array_equal(same, y == 1)
    assert np.all(i[y == 1] != j[y == 1])                             # two distinct images
    assert not np.all(y[:1000] == 1)                                  # shuffled, not sorted


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_hard_negative_fraction(dataset, fraction):
    i, j, y = PairSampler(dataset, hard_negative_fraction=fraction, seed=1).sample(8000)
    neg = y == 0
    same_alphabet = (dataset.alphabet[i] == dataset.alphabet[j])[neg].mean()
    assert abs(same_alphabet - fraction) < 0.03                       # 4000 negatives: sd < 0.008


def test_pairs_cover_every_character_roughly_uniformly(dataset):
    i, j, y = PairSampler(dataset, seed=2).sample(20000)
    counts = np.bincount(dataset.character[np.concatenate([i, j])], minlength=dataset.n_characters)
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()
    drawers = np.bincount(dataset.drawer[i], minlength=20)
    assert drawers.min() > 0.7 * drawers.mean()


def test_pairs_are_reproducible(dataset):
    a = PairSampler(dataset, seed=7)
    b = PairSampler(dataset, seed=7)
    for (x, y) in zip(a.batches(64, n_batches=3), b.batches(64, n_batches=3)):
        assert all(np.array_equal(u, v) for u, v in zip(x, y))
    c = PairSampler(dataset, seed=8).sample(64)
    assert not np.array_equal(c[0], PairSampler(dataset, seed=7).sample(64)[0])


def test_pairs_respect_a_subset(dataset):
    train, _, _ = split_drawers(dataset)
    i, j, _ = PairSampler(train, seed=0).sample(500)
    assert i.max() < len(train) and j.max() < len(train)


def test_sampler_errors():
    one_alphabet = make_dataset((5,))
    with pytest.raises(ValueError, match="one alphabet.*hard_negative_fraction=1"):
        PairSampler(one_alphabet, hard_negative_fraction=0.5)
    i, j, y = PairSampler(one_alphabet, hard_negative_fraction=1.0).sample(10)
    assert y.sum() == 5
    singletons = make_dataset((1, 1, 1))
    with pytest.raises(ValueError, match="no alphabet has two characters"):
        PairSampler(singletons, hard_negative_fraction=0.5)
    i, j, y = PairSampler(singletons, hard_negative_fraction=0.0).sample(100)
    assert (singletons.alphabet[i] != singletons.alphabet[j])[y == 0].all()
    with pytest.raises(ValueError, match="no character has two images"):
        PairSampler(make_dataset((3, 3), n_drawers=1), hard_negative_fraction=0.0)
    with pytest.raises(ValueError, match="hard_negative_fraction must be in"):
        PairSampler(make_dataset(), hard_negative_fraction=1.5)
    with pytest.raises(ValueError, match="must be even"):
        PairSampler(make_dataset()).sample(7)


# --------------------------------------------------------------------------- P x K groups

def test_group_batches_are_p_characters_times_k_images(dataset):
    idx, labels, sym = GroupSampler(dataset, classes_per_batch=4, images_per_class=3, same_alphabet=False,
                                    seed=0).sample()
    assert not sym.any()
    assert idx.shape == labels.shape == (12,) and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    chars = dataset.character[idx].reshape(4, 3)
    assert (chars == chars[:, :1]).all()                  # one label = one character
    assert len(set(chars[:, 0])) == 4 and len(set(idx)) == 12   # 4 characters, 12 distinct images


def test_group_batches_from_one_alphabet(dataset):
    sampler = GroupSampler(dataset, classes_per_batch=5, images_per_class=2, seed=1)
    sizes = set()
    for _ in range(30):
        idx, labels, _ = sampler.sample()
        assert len(set(dataset.alphabet[idx])) == 1
        sizes.add(idx.size)
    assert sizes == {6, 8, 10}                # alphabets of 3 and 4 characters give smaller batches


def test_group_sampler_is_seeded_and_checks(dataset):
    a = GroupSampler(dataset, 4, 2, seed=3).sample()
    b = GroupSampler(dataset, 4, 2, rng=np.random.default_rng(3)).sample()
    assert np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="images_per_class=21 but some characters have only 20"):
        GroupSampler(dataset, 4, 21)
    with pytest.raises(ValueError, match="classes_per_batch=40 but the set has 18"):
        GroupSampler(dataset, 40, 2, same_alphabet=False)


def test_group_sampler_with_symmetries_makes_new_classes(dataset):
    sampler = GroupSampler(dataset, classes_per_batch=6, images_per_class=2, same_alphabet=False,
                           symmetries=8, seed=4)
    seen = set()
    for _ in range(40):
        idx, labels, sym = sampler.sample()
        assert idx.size == 12 and sym.min() >= 0 and sym.max() <= 7
        classes = {(int(dataset.character[i]), int(s)) for i, s in zip(idx, sym)}
        assert len(classes) == 6                 # 6 distinct (character, symmetry) classes
        for lab in range(6):                     # one label = one character under one symmetry
            members = labels == lab
            assert len({(int(dataset.character[i]), int(s)) for i, s in zip(idx[members], sym[members])}) == 1
        seen |= {int(s) for s in sym}
    assert seen == set(range(8))
    with pytest.raises(ValueError, match="symmetries must be 1"):
        GroupSampler(dataset, 4, 2, symmetries=4)
