import numpy as np
import pytest

from npsiamese.optim import SGD, Adam, cosine_learning_rate, koch_learning_rate, koch_momentum


def quadratic_params():
    p = np.array([3.0, -2.0])
    g = np.zeros(2)
    return p, g, [("layer.w", p, g)]


def test_sgd_step_matches_formula():
    p, g, params = quadratic_params()
    opt = SGD(params, lr=0.1, momentum=0.5, weight_decay=0.01)
    g[...] = [1.0, 1.0]
    opt.step()
    v1 = -0.1 * (g + 0.01 * np.array([3.0, -2.0]))
    np.testing.assert_allclose(p, np.array([3.0, -2.0]) + v1)
    p_before = p.copy()
    opt.step()
    v2 = 0.5 * v1 - 0.1 * (g + 0.01 * p_before)
    np.testing.assert_allclose(p, p_before + v2)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.1)])
def test_optimisers_minimise_a_quadratic(make):
    p, g, params = quadratic_params()
    opt = make(params)
    for _ in range(300):
        g[...] = 2 * p  # gradient of |p|^2
        opt.step()
    assert np.abs(p).max() < 1e-2


def test_per_layer_lr_and_momentum():
    a, ga = np.ones(1), np.ones(1)
    b, gb = np.ones(1), np.ones(1)
    opt = SGD([("tower.0.w", a, ga), ("head.w", b, gb)], lr=0.1, momentum=0.9,
              layer_lr_scale={"tower.0": 2.0}, layer_momentum={"head": 0.0})
    assert opt.lr_of("tower.0.w") == pytest.approx(0.2) and opt.lr_of("head.w") == pytest.approx(0.1)
    assert opt.momentum_of("tower.0.w") == 0.9 and opt.momentum_of("head.w") == 0.0
    # "tower.0" must not match "tower.01"
    assert opt.lr_of("tower.01.w") == pytest.approx(0.1)
    opt.step()
    np.testing.assert_allclose([a[0], b[0]], [0.8, 0.9])


def test_state_round_trip_continues_identically():
    p1, g1, params1 = quadratic_params()
    opt1 = Adam(params1, lr=0.05)
    for _ in range(5):
        g1[...] = 2 * p1
        opt1.step()
    p2, g2, params2 = quadratic_params()
    p2[...] = p1
    opt2 = Adam(params2, lr=0.05)
    opt2.load_state_dict(opt1.state_dict())
    for _ in range(5):
        g1[...] = 2 * p1
        opt1.step()
        g2[...] = 2 * p2
        opt2.step()
    np.testing.assert_array_equal(p1, p2)


def test_schedules():
    assert koch_learning_rate(0.1, 0) == 0.1
    assert koch_learning_rate(0.1, 2) == pytest.approx(0.1 * 0.99 ** 2)
    assert koch_momentum(0.9, 0, 10) == 0.5
    assert koch_momentum(0.9, 5, 10) == pytest.approx(0.7)
    assert koch_momentum(0.9, 50, 10) == pytest.approx(0.9)
    assert cosine_learning_rate(1.0, 0.05, warmup=0.1) == pytest.approx(0.5)
    assert cosine_learning_rate(1.0, 0.1, warmup=0.1) == pytest.approx(1.0)
    assert cosine_learning_rate(1.0, 1.0, warmup=0.1, floor=0.1) == pytest.approx(0.1)


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="SGD: lr"):
        SGD([], lr=0)
    with pytest.raises(ValueError, match="momentum"):
        SGD([], momentum=1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_kernel_matches_the_numpy_formula_bit_for_bit(dtype, monkeypatch):
    """The fused SGD kernel and the three NumPy lines it replaces give identical numbers."""
    import npsiamese.optim
    monkeypatch.setattr(npsiamese.optim, "_KERNEL_MIN_SIZE", 1)  # the kernel even for this small array
    calls = []
    kernel = npsiamese.optim._sgd_kernel
    monkeypatch.setattr(npsiamese.optim, "_sgd_kernel", lambda *a: calls.append(1) or kernel(*a))
    rng = np.random.default_rng(0)
    p = rng.standard_normal((7, 5)).astype(dtype)
    g = rng.standard_normal((7, 5)).astype(dtype)
    opt = SGD([("w", p, g)], lr=0.03, momentum=0.7, weight_decay=1e-3)
    p_ref, v_ref = p.copy(), np.zeros_like(p)
    for _ in range(3):
        opt.step()
        v_ref *= 0.7
        v_ref -= 0.03 * (g + 1e-3 * p_ref)
        p_ref += v_ref
        np.testing.assert_array_equal(opt.velocity["w"], v_ref)
        np.testing.assert_array_equal(p, p_ref)
    assert len(calls) == 3
    # a non-contiguous parameter takes the NumPy path and gets the same update
    q = np.asfortranarray(rng.standard_normal((4, 3)).astype(dtype))
    gq = np.ones_like(q)
    q0 = q.copy()
    SGD([("q", q, gq)], lr=0.5, momentum=0.0).step()
    np.testing.assert_array_equal(q, q0 - dtype(0.5) * gq)
