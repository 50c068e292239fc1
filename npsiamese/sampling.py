"""Train/validation splits and balanced same/different pair sampling.

Koch et al. (2015) train the verification network on pairs of images: half
show the same character (label 1), half two different characters (label 0).
They keep alphabets apart (training alphabets never appear at validation) and
drawers apart (12 of the 20 drawers for training, the others held out).

A "hard" negative is a different-character pair taken from the *same*
alphabet (two Greek letters look more alike than a Greek letter and a Korean
one); :class:`PairSampler` draws a chosen share of those.
:class:`GroupSampler` instead draws P characters x K images per batch, so
that every pair inside the batch can be used.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_positive_int


def split_alphabets(dataset, n_val, seed=0):
    """Split a set by alphabet: ``n_val`` seeded-random alphabets for validation.

    Parameters
    ----------
    dataset : Omniglot
    n_val : int
        Number of validation alphabets, ``1 <= n_val < dataset.n_alphabets``.
    seed : int
        Same seed, same split.

    Returns
    -------
    train, val : Omniglot
        Disjoint subsets; every image of an alphabet lands on the same side.
    """
    n_val = check_positive_int(n_val, "split_alphabets", "n_val")
    if n_val >= dataset.n_alphabets:
        raise ValueError(f"split_alphabets: n_val must be smaller than the number of alphabets "
                         f"({dataset.n_alphabets}), got {n_val}; some alphabets must stay for training.")
    val_alphabets = np.random.default_rng(seed).permutation(dataset.n_alphabets)[:n_val]
    is_val = np.isin(dataset.alphabet, val_alphabets)
    return dataset.subset(~is_val), dataset.subset(is_val)


def split_drawers(dataset, n_train=12, n_val=4, seed=0):
    """Split a set by drawer (Koch et al.: 12 drawers train, 4 validation, the rest test).

    Drawer ids are shuffled with ``seed``; the first ``n_train`` go to train,
    the next ``n_val`` to validation, the remaining ones to test.

    Returns
    -------
    train, val, test : Omniglot
        Disjoint subsets with the same characters; ``test`` may be empty
        (``len(test) == 0``) when every drawer is used by train and val.
    """
    drawers = np.unique(dataset.drawer)
    n_train = check_positive_int(n_train, "split_drawers", "n_train")
    n_val = check_positive_int(n_val, "split_drawers", "n_val", minimum=0)
    if n_train + n_val > drawers.size:
        raise ValueError(f"split_drawers: n_train + n_val = {n_train + n_val} but the set has only "
                         f"{drawers.size} drawers; lower n_train or n_val.")
    order = np.random.default_rng(seed).permutation(drawers)
    groups = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return tuple(dataset.subset(np.isin(dataset.drawer, g)) for g in groups)


def _groups(labels, n_groups):
    """CSR grouping: ``members[start[g]:start[g] + count[g]]`` are the positions with label ``g``."""
    members = np.argsort(labels, kind="stable")
    count = np.bincount(labels, minlength=n_groups)
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    return members, start, count


def _uniform_below(rng, m):
    """One uniform integer in ``0 .. m[k] - 1`` for each entry of the int array ``m``."""
    return np.minimum((rng.random(np.shape(m)) * m).astype(np.int64), np.maximum(m - 1, 0))


class PairSampler:
    """Seeded, balanced same/different image pairs from an :class:`~npsiamese.omniglot.Omniglot`.

    Parameters
    ----------
    dataset : Omniglot
        Uses only ``dataset.character``, ``dataset.character_alphabet``.
    hard_negative_fraction : float in [0, 1]
        Share of the "different" pairs whose two characters come from the
        same alphabet; the others come from two different alphabets.
    seed : int
        Seeds a private ``numpy.random.Generator``: the same seed and the same
        calls give the same pairs.

    Notes
    -----
    Same pair: a character uniformly at random (among those with >= 2
    images), then two distinct images of it. Different pair: a character
    ``c1`` uniformly at random, then ``c2 != c1`` uniformly among the
    characters of the same alphabet (hard) or of the other alphabets (easy),
    then one image of each.
    """

    def __init__(self, dataset, hard_negative_fraction=0.5, seed=0):
        where = "PairSampler"
        if not 0.0 <= float(hard_negative_fraction) <= 1.0:
            raise ValueError(f"{where}: hard_negative_fraction must be in [0, 1], "
                             f"got {hard_negative_fraction}.")
        self.hard_negative_fraction = float(hard_negative_fraction)
        self.rng = np.random.default_rng(seed)
        n_chars = len(dataset.characters)
        self._images, self._img_start, self._img_count = _groups(dataset.character, n_chars)
        self._char_alphabet = dataset.character_alphabet
        # characters grouped by alphabet, to draw "another character of alphabet a"
        self._chars, self._chr_start, self._chr_count = _groups(dataset.character_alphabet,
                                                                len(dataset.alphabets))
        slot = np.empty(n_chars, dtype=np.int64)
        slot[self._chars] = np.arange(n_chars)
        self._slot_in_alphabet = slot - self._chr_start[self._char_alphabet]
        self._same_ok = np.flatnonzero(self._img_count >= 2)
        has_images = self._img_count >= 1
        if self._same_ok.size == 0:
            raise ValueError(f"{where}: no character has two images, so no 'same' pair exists; "
                             f"use a set with several drawers per character.")
        if not has_images.all():
            raise ValueError(f"{where}: {int((~has_images).sum())} character(s) have no image; build the "
                             f"sampler from a subset made with Omniglot.subset (it renumbers characters).")
        self._hard_ok = np.flatnonzero(self._chr_count[self._char_alphabet] >= 2)
        if self.hard_negative_fraction > 0 and self._hard_ok.size == 0:
            raise ValueError(f"{where}: no alphabet has two characters, so hard negatives are impossible; "
                             f"set hard_negative_fraction=0.")
        if self.hard_negative_fraction < 1 and len(dataset.alphabets) < 2:
            raise ValueError(f"{where}: the set has one alphabet, so every negative is a hard one; "
                             f"set hard_negative_fraction=1.")

    def _image_of(self, chars):
        """One uniformly random image index of each character in ``chars``."""
        k = _uniform_below(self.rng, self._img_count[chars])
        return self._images[self._img_start[chars] + k]

    def _other_character(self, c1, same_alphabet):
        """For each ``c1``, a uniformly random ``c2 != c1`` inside (True) / outside (False) its alphabet.

        ``self._chars`` lists the characters grouped by alphabet; alphabet ``a``
        occupies slots ``start[a] .. start[a] + count[a] - 1``.
        """
        a = self._char_alphabet[c1]
        start, count = self._chr_start[a], self._chr_count[a]
        n_chars = self._chars.size
        k = _uniform_below(self.rng, np.where(same_alphabet, count - 1, n_chars - count))
        # inside: one of the count-1 other slots of the group, skipping c1's own slot
        inside = start + k + (k >= self._slot_in_alphabet[c1])
        # outside: one of the n_chars-count slots of the other groups, skipping this group
        outside = k + np.where(k >= start, count, 0)
        return self._chars[np.where(same_alphabet, inside, outside)]

    def sample(self, n_pairs):
        """Draw ``n_pairs`` pairs, half "same" and half "different", in random order.

        Returns
        -------
        i, j : numpy.ndarray, shape (n_pairs,), int64
            Image indices into the dataset.
        y : numpy.ndarray, shape (n_pairs,), float32
            1.0 where images ``i`` and ``j`` show the same character, else 0.0.
        """
        n_pairs = check_positive_int(n_pairs, "PairSampler.sample", "n_pairs", minimum=2)
        if n_pairs % 2:
            raise ValueError(f"PairSampler.sample: n_pairs must be even for a balanced batch, got {n_pairs}.")
        half = n_pairs // 2
        rng = self.rng
        # same: one character, two distinct images (second index skips the first)
        c = self._same_ok[rng.integers(self._same_ok.size, size=half)]
        first = _uniform_below(rng, self._img_count[c])
        second = _uniform_below(rng, self._img_count[c] - 1)
        second += second >= first
        i_same = self._images[self._img_start[c] + first]
        j_same = self._images[self._img_start[c] + second]
        # different: hard (same alphabet) with probability hard_negative_fraction
        hard = rng.random(half) < self.hard_negative_fraction
        c1 = rng.integers(self._img_count.size, size=half)            # easy: any character
        if hard.any():                                                  # hard: one with an alphabet-mate
            c1[hard] = self._hard_ok[rng.integers(self._hard_ok.size, size=int(hard.sum()))]
        c2 = self._other_character(c1, hard)
        i = np.concatenate([i_same, self._image_of(c1)])
        j = np.concatenate([j_same, self._image_of(c2)])
        y = np.concatenate([np.ones(half, np.float32), np.zeros(half, np.float32)])
        order = rng.permutation(n_pairs)
        return i[order], j[order], y[order]

    def batches(self, batch_size, n_batches=None):
        """Yield ``(i, j, y)`` batches of ``batch_size`` pairs; forever if ``n_batches`` is None."""
        count = 0
        while n_batches is None or count < n_batches:
            yield self.sample(batch_size)
            count += 1


class GroupSampler:
    """P x K batches: ``classes_per_batch`` classes with ``images_per_class`` images each.

    Every pair of images inside such a batch is a training pair (same class:
    label 1, else 0), so one tower pass over P*K images yields P*K*(P*K-1)/2
    pairs (see :mod:`npsiamese.train`).

    Parameters
    ----------
    dataset : Omniglot
    classes_per_batch : int
        P, the classes per batch.
    images_per_class : int
        K, distinct images drawn per class (every character needs >= K).
    same_alphabet : bool
        Take the P classes from one random alphabet (chosen with probability
        proportional to its number of characters): hard batches, like a
        within-alphabet test task. An alphabet with fewer than P classes gives
        all of them, so its batch is smaller. Else draw from the whole set.
    symmetries : 1 or 8
        With 8, a class is a (character, symmetry) pair: one of the 8 rotations
        by multiples of 90 degrees and their mirror images (the dihedral group
        D4, see :func:`npsiamese.augment.dihedral`). A mirrored or rotated
        character is a new character, so a small training set gets 8 times as
        many classes; two symmetries of one character are a "different" pair.
    rng : numpy.random.Generator, optional
        Shared generator; default ``numpy.random.default_rng(seed)``.
    """

    def __init__(self, dataset, classes_per_batch, images_per_class, same_alphabet=True, symmetries=1,
                 rng=None, seed=0):
        where = "GroupSampler"
        self.classes_per_batch = check_positive_int(classes_per_batch, where, "classes_per_batch", minimum=2)
        self.images_per_class = check_positive_int(images_per_class, where, "images_per_class")
        if symmetries not in (1, 8):
            raise ValueError(f"{where}: symmetries must be 1 (none) or 8 (rotations and flips), got {symmetries!r}.")
        self.symmetries = symmetries
        self.same_alphabet = bool(same_alphabet)
        self.rng = np.random.default_rng(seed) if rng is None else rng
        n_chars = len(dataset.characters)
        self._images, self._img_start, self._img_count = _groups(dataset.character, n_chars)
        self._chars, self._chr_start, self._chr_count = _groups(dataset.character_alphabet,
                                                                len(dataset.alphabets))
        self._alphabet_p = self._chr_count / self._chr_count.sum()
        if self._img_count.min() < self.images_per_class:
            raise ValueError(f"{where}: images_per_class={images_per_class} but some characters have only "
                             f"{self._img_count.min()} images; lower images_per_class.")
        if not self.same_alphabet and n_chars * symmetries < self.classes_per_batch:
            raise ValueError(f"{where}: classes_per_batch={classes_per_batch} but the set has {n_chars} "
                             f"characters.")

    def sample(self):
        """One batch.

        Returns
        -------
        idx : numpy.ndarray, shape (P*K,), int64
            Image indices into the dataset, grouped by class.
        labels : numpy.ndarray, shape (P*K,), int64
            Position of each image's class in the batch, 0..P-1.
        symmetry : numpy.ndarray, shape (P*K,), int64
            The D4 element (0..7) to apply to each image; all 0 when symmetries=1.
        """
        rng, T = self.rng, self.symmetries
        if self.same_alphabet:
            a = rng.choice(self._alphabet_p.size, p=self._alphabet_p)
            group = self._chars[self._chr_start[a]:self._chr_start[a] + self._chr_count[a]]
        else:
            group = np.arange(self._img_count.size)
        # class k of the group is character group[k // T] seen through symmetry k % T
        classes = rng.choice(group.size * T, size=min(self.classes_per_batch, group.size * T), replace=False)
        chars, sym = group[classes // T], classes % T
        idx = [self._images[self._img_start[c] + rng.choice(self._img_count[c], self.images_per_class,
                                                            replace=False)] for c in chars]
        K = self.images_per_class
        return np.concatenate(idx), np.repeat(np.arange(chars.size), K), np.repeat(sym, K)
