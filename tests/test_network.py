import json

import numpy as np
import pytest

from npsiamese.gradcheck import check_network, tiny_network
from npsiamese.network import SiameseNetwork, build_tower, compact_tower, koch_tower


def images(rng, n, size, dtype=np.float64):
    return rng.random((n, 1, size, size)).astype(dtype)


def test_shared_weights_receive_the_sum_of_both_branches():
    """Running the tower once on [x1; x2] equals two separate towers whose gradients are added."""
    rng = np.random.default_rng(0)
    x1, x2 = images(rng, 3, 8), images(rng, 3, 8)
    y = np.array([1.0, 0.0, 1.0])
    shared = tiny_network(seed=1)
    shared.zero_grad()
    loss = shared.loss_and_grad(x1, x2, y)

    # Two physically separate copies of the tower with identical weights.
    left, right = tiny_network(seed=1), tiny_network(seed=1)
    left.zero_grad()
    right.zero_grad()
    h1, h2 = left.tower_forward(x1), right.tower_forward(x2)
    d = left.distance.forward(h1, h2)
    s = left.head.forward(d)[:, 0]
    assert left.criterion.forward(s, y) == pytest.approx(loss, rel=1e-12)
    dd = left.head.backward(np.ascontiguousarray(left.criterion.backward()[:, None]))
    dh1, dh2 = left.distance.backward(dd)
    left.tower_backward(dh1)
    right.tower_backward(dh2)

    for (name, _, g_shared), (_, _, g_left), (_, _, g_right) in zip(
            shared.named_parameters(), left.named_parameters(), right.named_parameters()):
        if name.startswith("head"):
            np.testing.assert_allclose(g_shared, g_left, rtol=1e-10, atol=1e-14)
            continue
        np.testing.assert_allclose(g_shared, g_left + g_right, rtol=1e-10, atol=1e-14, err_msg=name)
        # both branches really contribute: neither alone is the answer
        assert not np.allclose(g_shared, g_left) and not np.allclose(g_shared, g_right), name


def test_pairs_loss_equals_classic_loss():
    rng = np.random.default_rng(1)
    x1, x2 = images(rng, 4, 8), images(rng, 4, 8)
    y = np.array([1.0, 0.0, 0.0, 1.0])
    a, b = tiny_network(seed=2), tiny_network(seed=2)
    a.zero_grad()
    b.zero_grad()
    la = a.loss_and_grad(x1, x2, y)
    lb = b.pairs_loss_and_grad(np.concatenate([x1, x2]), np.arange(4), np.arange(4, 8), y)
    assert la == pytest.approx(lb, rel=1e-12)
    for (_, _, ga), (_, _, gb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(ga, gb, rtol=1e-12)


def test_pairs_reusing_images_check_against_finite_differences():
    """All pairs of a batch: an image used in many pairs sums their gradients."""
    rng = np.random.default_rng(2)
    net = tiny_network(seed=3)
    x = images(rng, 4, 8)
    left, right = np.triu_indices(4, k=1)
    y = np.array([1.0, 0, 0, 0, 0, 1])
    w = np.array([3.0, 1, 1, 1, 1, 3])
    net.zero_grad()
    net.pairs_loss_and_grad(x, left, right, y, w)
    analytic = {name: g.copy() for name, _, g in net.named_parameters()}
    from npsiamese.gradcheck import numerical_gradient, rel_error
    for name, p, _ in net.named_parameters():
        numeric = numerical_gradient(lambda: net.pairs_loss_and_grad(x, left, right, y, w), p)
        assert rel_error(analytic[name], numeric) < 1e-6, name


@pytest.mark.parametrize("arch, size, options", [
    ("compact", 16, {"widths": (3, 4), "embedding": 5}),
    ("seed", 9, {}),
])
def test_builtin_architectures_pass_gradient_check(arch, size, options):
    rng = np.random.default_rng(4)
    net = SiameseNetwork(arch, image_size=size, dtype=np.float64, seed=5, **options)
    x1, x2 = images(rng, 2, size), images(rng, 2, size)
    results = check_network(net, x1, x2, np.array([1.0, 0.0]), max_entries=30)
    assert len(results) == 2 * sum(1 for _, l in net.layers() if l.params)
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_whole_network_check_catches_a_wrong_layer():
    """Negative control: break one conv layer's weight gradient; the check must fail there only."""
    rng = np.random.default_rng(6)
    net = tiny_network(seed=7)
    conv = net.tower[0]
    original = conv.backward

    def wrong_backward(dout):
        dx = original(dout)
        conv.grads["w"] *= 1.01  # 1% off
        return dx

    conv.backward = wrong_backward
    results = check_network(net, images(rng, 2, 8), images(rng, 2, 8), np.array([0.0, 1.0]))
    failed = {r.tensor for r in results if not r.passed}
    assert failed == {"tower.0.w"}


def test_architecture_shapes():
    layers, dim = build_tower(koch_tower(), 105)
    assert dim == 4096
    assert layers[-2].in_features == 256 * 6 * 6  # the paper's 9216-unit flattened layer
    net = SiameseNetwork("seed", image_size=28)
    assert net.embedding_dim == 128
    assert SiameseNetwork("compact", image_size=35, embedding=64).embedding_dim == 64
    with pytest.raises(ValueError, match="image_size=8"):
        SiameseNetwork("koch", image_size=8)
    with pytest.raises(ValueError, match="activation"):
        compact_tower(activation="tanh")


def test_koch_initialisation_statistics():
    net = SiameseNetwork("compact", image_size=28, init="koch", widths=(64, 64), embedding=512, seed=0)
    conv_w = net.tower[0].params["w"]
    dense_w = [l for l in net.tower if type(l).__name__ == "Dense"][0].params["w"]
    assert conv_w.std() == pytest.approx(1e-2, rel=0.2)
    assert dense_w.std() == pytest.approx(2e-1, rel=0.05)
    assert net.tower[0].params["b"].mean() == pytest.approx(0.5, abs=0.01)
    he = SiameseNetwork("compact", image_size=28, init="he", widths=(64, 64), embedding=512, seed=0)
    assert he.tower[3].params["w"].std() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)


def test_predict_embed_and_similarity_matrix_agree():
    rng = np.random.default_rng(8)
    net = SiameseNetwork("compact", image_size=16, widths=(4, 4), embedding=8, seed=1)
    x1, x2 = images(rng, 5, 16, np.float32), images(rng, 5, 16, np.float32)
    p = net.predict(x1, x2)
    assert p.shape == (5,) and p.dtype == np.float32 and np.all((p > 0) & (p < 1))
    e1, e2 = net.embed(x1, batch_size=2), net.embed(x2)
    np.testing.assert_allclose(e1, net.embed(x1), rtol=1e-6)
    m = net.similarity_matrix(e1, e2)
    np.testing.assert_allclose(np.diag(m), p, rtol=1e-5)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    net = SiameseNetwork("compact", image_size=16, widths=(4, 4), embedding=8, seed=1)
    path = tmp_path / "ckpt.npz"
    net.save(path, extra={"step": np.array(7)})
    loaded, extra = SiameseNetwork.load(path, return_extra=True)
    assert int(extra["step"]) == 7
    assert loaded.config == json.loads(json.dumps(net.config))
    x1, x2 = images(rng, 3, 16, np.float32), images(rng, 3, 16, np.float32)
    np.testing.assert_array_equal(net.predict(x1, x2), loaded.predict(x1, x2))
    custom = SiameseNetwork(tiny_network().config["spec"], image_size=8, seed=3)
    custom.save(tmp_path / "custom.npz")
    assert SiameseNetwork.load(tmp_path / "custom.npz").embedding_dim == custom.embedding_dim


def test_load_mismatch_is_a_clear_error(tmp_path):
    net = SiameseNetwork("compact", image_size=16, widths=(4, 4), embedding=8)
    path = tmp_path / "a.npz"
    net.save(path)
    other = SiameseNetwork("compact", image_size=16, widths=(4, 8), embedding=8)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(SiameseNetwork.load(path).state_dict(), source=str(path))
    with pytest.raises(ValueError, match="image_size=16"):
        SiameseNetwork.load(path, image_size=35)
    with pytest.raises(ValueError, match="'koch'"):
        SiameseNetwork.load(path, arch="koch")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an npsiamese checkpoint"):
        SiameseNetwork.load(junk)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        SiameseNetwork.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("x, err, words", [
    (np.zeros((2, 1, 15, 15), np.float32), ValueError, r"shape \(\*, 1, 16, 16\)"),
    (np.zeros((2, 3, 16, 16), np.float32), ValueError, "shape"),
    (np.zeros((2, 16, 16), np.float32), ValueError, "4 dimensions"),
    (np.zeros((2, 1, 16, 16), np.float64), TypeError, "float32"),
    (np.zeros((2, 1, 16, 16), np.uint8), TypeError, "float32"),
    (np.full((2, 1, 16, 16), np.nan, np.float32), ValueError, "NaN"),
])
def test_bad_images(x, err, words):
    net = SiameseNetwork("compact", image_size=16, widths=(4, 4), embedding=8)
    with pytest.raises(err, match=words) as info:
        net.embed(x)
    assert "SiameseNetwork" in str(info.value)


def test_bad_pairs():
    net = SiameseNetwork("compact", image_size=16, widths=(4, 4), embedding=8)
    x = np.zeros((3, 1, 16, 16), np.float32)
    with pytest.raises(ValueError, match="right indexes rows of a batch of 3"):
        net.pairs_loss_and_grad(x, [0, 1], [1, 3], [1, 0])
    with pytest.raises(ValueError, match="same length"):
        net.pairs_loss_and_grad(x, [0, 1], [1], [1, 0])
    with pytest.raises(ValueError, match="same shape"):
        net.loss_and_grad(x, x[:2], np.ones(3, np.float32))


def test_towers_pool_before_relu_with_the_same_results_as_relu_then_pool():
    """ReLU and max-pool commute: the towers pool first (less work), outputs and gradients as the other order."""
    from npsiamese.activations import ReLU
    from npsiamese.pool import MaxPool2D
    net = SiameseNetwork("seed", image_size=12, dtype=np.float64, seed=0)
    assert [type(layer) for layer in net.tower[:3]] == [type(net.tower[0]), MaxPool2D, ReLU]
    assert [name for name, _, _ in net.named_parameters()][:2] == ["tower.0.w", "tower.0.b"]
    rng = np.random.default_rng(4)
    x = rng.random((3, 1, 12, 12)) - 0.5
    as_written = [net.tower[0], net.tower[2], net.tower[1]] + net.tower[3:]  # conv, relu, pool, ...
    results = []
    for layers in (net.tower, as_written):
        net.zero_grad()
        h = x
        for layer in layers:
            h = layer.forward(h)
        dh = np.linspace(-1, 1, h.size).reshape(h.shape)
        for layer in reversed(layers):
            dh = layer.backward(dh)
        results.append((h, [g.copy() for _, _, g in net.named_parameters()]))
    (h_a, g_a), (h_b, g_b) = results
    np.testing.assert_array_equal(h_a, h_b)
    for a, b in zip(g_a, g_b):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_first_conv_skips_the_input_gradient():
    net = SiameseNetwork("compact", image_size=28, seed=0)
    convs = [layer for layer in net.tower if hasattr(layer, "needs_input_grad")]
    assert [c.needs_input_grad for c in convs] == [False, True, True, True]
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    h = net.tower_forward(x)
    assert net.tower_backward(np.ones_like(h)) is None


def test_network_checks_images_and_loss_but_not_every_activation():
    """Inside the network only the images are checked for NaN (on the way in); a blown-up
    weight shows up as non-finite logits, reported as such, before any gradient is touched."""
    from npsiamese._checks import NonFiniteError
    net = SiameseNetwork("compact", image_size=16, seed=0, dtype=np.float64)
    assert not any(layer.check_finite for _, layer in net.layers()) and not net.distance.check_finite
    x = np.random.default_rng(0).random((4, 1, 16, 16))
    left, right, y = np.array([0, 1]), np.array([2, 3]), np.array([1.0, 0.0])
    for layer in net.tower:  # finite but huge weights: the activations overflow to inf
        if "w" in layer.params:
            layer.params["w"][...] = 1e120
    net.zero_grad()
    with pytest.raises(NonFiniteError, match="logits are NaN or infinite.*learning rate"):
        net.pairs_loss_and_grad(x, left, right, y)
    assert all(not g.any() for _, _, g in net.named_parameters())
    # a layer on its own still refuses NaN input
    with pytest.raises(NonFiniteError):
        net.tower[1].__class__().forward(np.full((1, 2, 4, 4), np.nan, np.float32))


def test_add_rows_kernel_is_np_add_at():
    """The scatter-add that sums each image's gradient over its pairs, repeated rows included."""
    from npsiamese.network import _add_rows_kernel
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 5, size=40)
    src = rng.standard_normal((40, 3))
    got, want = np.zeros((5, 3)), np.zeros((5, 3))
    _add_rows_kernel(got, rows, src)
    np.add.at(want, rows, src)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
