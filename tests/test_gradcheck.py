import json

import numpy as np
import pytest

from npsiamese import gradcheck
from npsiamese.cli import main
from npsiamese.dense import Dense, dense_backward
from npsiamese.gradcheck import check_layer, numerical_gradient, rel_error, run_all_checks


def test_numerical_gradient_of_a_known_function():
    t = np.array([1.0, -2.0, 0.5])
    g = numerical_gradient(lambda: float(np.sum(t ** 3)), t)
    np.testing.assert_allclose(g, 3 * t ** 2, rtol=1e-8)
    np.testing.assert_array_equal(t, [1.0, -2.0, 0.5])  # restored


def test_rel_error_definition():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0
    assert rel_error([1.0, 0.0], [1.1, 0.0]) == pytest.approx(0.1 / 2.1)
    assert rel_error([0.0], [1e-12]) == pytest.approx(1e-4)  # 1e-8 floor on the denominator


def test_every_layer_loss_and_network_pass():
    results = run_all_checks()
    names = {r.name for r in results}
    for expected in ("Conv2D(3x3, pad 1)", "MaxPool2D(2)", "Flatten", "Dense", "ReLU", "Sigmoid",
                     "L1Distance", "BCEWithLogits", "SiameseNetwork (tiny)"):
        assert expected in names
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert max(r.max_rel_error for r in results) < 1e-6


class WrongDense(Dense):
    """A deliberately wrong backward: forgets to transpose-and-scale one gradient entry."""

    def backward(self, dout):
        dx, dw, db = dense_backward(dout, self.cache)
        self.grads["w"] += dw
        self.grads["b"] += 2 * db  # wrong: db counted twice
        return dx


def test_negative_control_wrong_backward_fails():
    rng = np.random.default_rng(0)
    layer = WrongDense(4, 3, dtype=np.float64)
    layer.params["w"][...] = rng.standard_normal((4, 3))
    results = {r.tensor: r for r in check_layer(layer, {"x": rng.standard_normal((2, 4))})}
    assert results["x"].passed and results["w"].passed
    assert not results["b"].passed and results["b"].max_rel_error > 0.1


def test_negative_control_wrong_conv_kernel_fails(monkeypatch):
    """Swap the conv backward for one that flips dw; the CLI check must fail and exit 1."""
    import npsiamese.conv as conv

    original = conv.conv2d_backward

    def flipped(dout, cache, **kw):
        dx, dw, db = original(dout, cache, **kw)
        return dx, dw[:, :, ::-1, ::-1].copy(), db

    monkeypatch.setattr(conv, "conv2d_backward", flipped)
    results = run_all_checks()
    failed = {(r.name, r.tensor) for r in results if not r.passed}
    assert ("Conv2D(3x3, pad 1)", "w") in failed
    assert all(r.passed for r in results if not r.name.startswith(("Conv2D", "SiameseNetwork")))


def test_cli_json(capsys):
    assert main(["gradcheck", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    assert {"name", "tensor", "max_rel_error", "passed"} <= set(report["checks"][0])
    assert len(report["checks"]) >= 20


def test_cli_table_and_failure_exit_code(capsys, monkeypatch):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert "max rel error" in out and "0 failed" in out
    real = gradcheck.run_all_checks

    def one_failure(seed=0):
        results = real(seed)
        results[0].passed = False
        return results

    monkeypatch.setattr(gradcheck, "run_all_checks", one_failure)
    assert main(["gradcheck"]) == 1
    assert "FAIL" in capsys.readouterr().out
