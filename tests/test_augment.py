"""Koch's affine distortions: identity, known moves, Numba kernel vs NumPy reference, sampling."""
import numpy as np
import pytest

from npsiamese.augment import (AffineParams, affine_matrices, distort, distort_batch, sample_affine_params,
                               warp_affine, warp_affine_reference)


def dot_image(size, row, col):
    """One ink pixel at (row, col)."""
    x = np.zeros((1, size, size), np.float32)
    x[0, row, col] = 1.0
    return x


def params(n=1, **kwargs):
    p = AffineParams.identity(n)
    for k, v in kwargs.items():
        setattr(p, k, np.full(n, float(v)))
    return p


@pytest.fixture(scope="module")
def random_images():
    return (np.random.default_rng(0).random((6, 35, 35)) < 0.2).astype(np.float32)


def test_identity_returns_the_image_unchanged(random_images):
    for warp in (warp_affine, warp_affine_reference):
        out = warp(random_images, affine_matrices(AffineParams.identity(6), 35))
        assert np.array_equal(out, random_images)


def test_translation_moves_a_dot_exactly():
    out = distort(dot_image(35, 10, 12), params(shift_x=3, shift_y=-2))
    assert out[0, 8, 15] == 1.0 and out.sum() == 1.0                  # x = column +3, y = row -2


def test_rotation_is_counter_clockwise_on_screen_about_the_centre():
    # centre of a 35 px image is (17, 17); a dot 10 px to the right of it ...
    out = distort(dot_image(35, 17, 27), params(rotation=90))
    # ... ends up 10 px above the centre
    assert out[0, 7, 17] == pytest.approx(1.0, abs=1e-9)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)
    out = distort(dot_image(35, 17, 27), params(rotation=-90))
    assert out[0, 27, 17] == pytest.approx(1.0, abs=1e-9)


def test_scale_and_shear_about_the_centre():
    out = distort(dot_image(35, 17, 22), params(scale_x=2))           # 5 px right -> 10 px right
    assert out[0, 17, 27] == pytest.approx(1.0)
    out = distort(dot_image(35, 22, 17), params(shear_x=0.4))         # x += 0.4 * y, y = 5 -> x = 2
    assert out[0, 22, 19] == pytest.approx(1.0)


def test_subpixel_shift_interpolates_bilinearly():
    out = distort(dot_image(35, 10, 10), params(shift_x=0.25))
    assert out[0, 10, 10] == pytest.approx(0.75) and out[0, 10, 11] == pytest.approx(0.25)


def test_numba_kernel_matches_numpy_reference(random_images):
    rng = np.random.default_rng(1)
    m = affine_matrices(sample_affine_params(6, rng, 35, p=1.0), 35)
    fast, slow = warp_affine(random_images, m), warp_affine_reference(random_images, m)
    assert fast.dtype == np.float32 and np.allclose(fast, slow, atol=1e-6)
    assert 0.0 <= fast.min() and fast.max() <= 1.0 + 1e-6              # convex combinations of pixels
    assert not np.allclose(fast, random_images)                        # negative control: it did move


def test_sampled_parameters_follow_koch():
    n = 20000
    p = sample_affine_params(n, np.random.default_rng(2), image_size=105)
    assert np.abs(p.rotation).max() <= 10 and np.abs([p.shear_x, p.shear_y]).max() <= 0.3
    assert 0.8 <= min(p.scale_x.min(), p.scale_y.min()) and max(p.scale_x.max(), p.scale_y.max()) <= 1.2
    assert np.abs([p.shift_x, p.shift_y]).max() <= 2.0
    for on in (p.rotation != 0, p.shear_x != 0, p.scale_x != 1, p.shift_x != 0):
        assert abs(on.mean() - 0.5) < 0.02                              # each component with p = 0.5
    assert abs(((p.rotation != 0) & (p.shift_x != 0)).mean() - 0.25) < 0.02   # independently
    small = sample_affine_params(n, np.random.default_rng(2), image_size=35)
    assert np.abs(small.shift_x).max() <= 2 * 35 / 105 + 1e-12 and np.abs(small.shift_x).max() > 0.6


def test_distort_batch_is_seeded_and_per_image(random_images):
    a = distort_batch(random_images, np.random.default_rng(3))
    b = distort_batch(random_images, np.random.default_rng(3))
    assert a.shape == random_images.shape and np.array_equal(a, b)
    twins = np.repeat(random_images[:1], 6, axis=0)
    out = distort_batch(twins, np.random.default_rng(4), p=1.0)
    assert not np.allclose(out[0], out[1])                             # drawn independently per image


def test_input_checks(random_images):
    with pytest.raises(TypeError, match="distort_batch: images must have dtype float32"):
        distort_batch(random_images.astype(np.float64), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"warp_affine: matrices must have shape \(6, 2, 3\)"):
        warp_affine(random_images, np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match="singular"):
        distort(random_images[:1], params(scale_x=0))


def test_dihedral_group_elements_are_distinct_and_invertible():
    from npsiamese.augment import dihedral
    img = np.zeros((1, 5, 5), np.float32)
    img[0, 0, 1] = 1.0                       # an asymmetric mark
    img[0, 2, 0] = 0.5
    variants = [dihedral(img, t)[0] for t in range(8)]
    assert len({v.tobytes() for v in variants}) == 8
    np.testing.assert_array_equal(variants[0], img[0])
    np.testing.assert_array_equal(variants[1], np.rot90(img[0]))
    np.testing.assert_array_equal(variants[4], img[0][:, ::-1])
    # per-image symmetries
    both = dihedral(np.concatenate([img, img]), np.array([0, 2]))
    np.testing.assert_array_equal(both[1], np.rot90(img[0], 2))
    # one symmetry for the whole stack (vectorised path) = the same symmetry per image
    stack = np.random.default_rng(0).random((3, 5, 5)).astype(np.float32)
    for t in range(8):
        np.testing.assert_array_equal(dihedral(stack, t), dihedral(stack, np.full(3, t)))
        assert dihedral(stack, t).flags.c_contiguous
    with pytest.raises(ValueError, match="0..7"):
        dihedral(img, 8)
    with pytest.raises(ValueError, match="0..7"):
        dihedral(img, np.array([-1]))
