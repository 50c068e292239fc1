"""Pixel and modified-Hausdorff baselines against direct, brute-force computations."""
import math

import numpy as np
import pytest

from npsiamese.baselines import (MHDScorer, PixelScorer, get_baseline, ink_points, mhd_matrix,
                                 modified_hausdorff)


def brute_force_mhd(image_a, image_b):
    """Dubuisson & Jain's MHD, written out with Python loops (Lake's demo_classification)."""
    def centred_points(image):
        pts = [(r, c) for r in range(image.shape[0]) for c in range(image.shape[1]) if image[r, c] >= 0.5]
        mr = sum(p[0] for p in pts) / len(pts)
        mc = sum(p[1] for p in pts) / len(pts)
        return [(r - mr, c - mc) for r, c in pts]

    def mean_min(a, b):
        return sum(min(math.dist(p, q) for q in b) for p in a) / len(a)

    a, b = centred_points(image_a), centred_points(image_b)
    return max(mean_min(a, b), mean_min(b, a))


@pytest.fixture(scope="module")
def sparse_images():
    """Random sparse 'drawings' with different amounts of ink."""
    rng = np.random.default_rng(0)
    density = rng.uniform(0.03, 0.2, size=(7, 1, 1))
    return (rng.random((7, 20, 20)) < density).astype(np.float32)


def test_mhd_kernel_agrees_with_brute_force(sparse_images):
    queries, support = sparse_images[:3], sparse_images[3:]
    fast = mhd_matrix(queries, support)
    slow = np.array([[brute_force_mhd(q, s) for s in support] for q in queries])
    assert fast.shape == (3, 4)
    assert np.allclose(fast, slow, rtol=1e-5)                             # float32 coordinates
    assert np.allclose(modified_hausdorff(ink_points(queries[0]), ink_points(support[1])), slow[0, 1])


def test_mhd_properties(sparse_images):
    d = mhd_matrix(sparse_images, sparse_images)
    assert np.allclose(np.diag(d), 0.0) and np.allclose(d, d.T, rtol=1e-5)
    assert (d[~np.eye(7, dtype=bool)] > 0).all()
    shifted = np.zeros_like(sparse_images[:1])
    shifted[0, 3:, 2:] = sparse_images[0, :-3, :-2]                       # move the drawing
    if shifted.sum() == sparse_images[0].sum():                           # nothing fell off the edge
        assert mhd_matrix(shifted, sparse_images[:1])[0, 0] == pytest.approx(0.0, abs=1e-5)


def test_mhd_threshold_and_empty_images(sparse_images):
    blank = np.zeros((2, 20, 20), np.float32)
    d = mhd_matrix(blank, sparse_images[:2])
    assert np.isinf(d).all() and (mhd_matrix(blank, blank) == 0).all()
    faint = sparse_images[:1] * 0.4
    assert np.isinf(mhd_matrix(faint, sparse_images[:1])).all()           # 0.4 < threshold 0.5: no ink
    assert mhd_matrix(faint, sparse_images[:1], threshold=0.3)[0, 0] == pytest.approx(0.0)


def test_ink_points_are_centred():
    image = np.zeros((10, 10))
    image[2, 3] = image[4, 7] = 1.0
    assert np.allclose(ink_points(image), [[-1.0, -2.0], [1.0, 2.0]])
    assert ink_points(np.zeros((4, 4))).shape == (0, 2)


def test_pixel_scorer_is_negative_euclidean_distance(sparse_images):
    q, s = sparse_images[:2], sparse_images[2:]
    direct = -np.sqrt(((q[:, None] - s[None]) ** 2).sum(axis=(2, 3)))
    assert np.allclose(PixelScorer().score(q, s), direct, atol=1e-9)


def test_scorers_by_name(sparse_images):
    assert isinstance(get_baseline("mhd"), MHDScorer) and isinstance(get_baseline("pixel"), PixelScorer)
    assert np.allclose(get_baseline("mhd").score(sparse_images[:2], sparse_images),
                       -mhd_matrix(sparse_images[:2], sparse_images))
    with pytest.raises(ValueError, match="unknown baseline 'knn'"):
        get_baseline("knn")


def test_shape_mismatch_is_named(sparse_images):
    with pytest.raises(ValueError, match=r"mhd_matrix: support must have shape \(\*, 20, 20\)"):
        mhd_matrix(sparse_images, np.zeros((2, 10, 10), np.float32))


@pytest.mark.data
def test_mhd_on_real_small2_is_in_lakes_ballpark(omniglot_dir, omniglot_cache):
    """Lake's MHD: 38.8% error on the evaluation runs. Held-out small2 alphabets should look similar."""
    from npsiamese.omniglot import load_omniglot
    from npsiamese.oneshot import evaluate_tasks, make_tasks
    if not (omniglot_dir / "images_background_small2.zip").exists():
        pytest.skip("images_background_small2.zip is not in NPSIAMESE_DATA")
    ds = load_omniglot("small2", image_size=35, data_dir=omniglot_dir)
    tasks = make_tasks(ds, ways=20, trials=20, within_alphabet=True, seed=0)
    mhd = evaluate_tasks(MHDScorer(), ds.images, tasks).accuracy
    pixel = evaluate_tasks(PixelScorer(), ds.images, tasks).accuracy
    assert 0.4 < mhd < 0.8 and 0.05 < pixel < 0.35 and mhd > pixel
