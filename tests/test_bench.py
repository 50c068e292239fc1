"""``npsiamese bench --quick --json`` runs and reports every figure; no timing is asserted."""
import json

import numpy as np
import pytest

from npsiamese.bench import main, random_batch, torch_step
from npsiamese.cli import main as cli_main
from npsiamese.network import SiameseNetwork

CASE_KEYS = {"net", "image_size", "batch", "ms_per_step", "ms_min", "ms_max", "pairs_per_s",
             "torch_ms_per_step", "ratio"}


def run_bench(capsys, *args):
    assert main(["--quick", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def check_report(r, with_torch):
    assert {"cases", "layers", "matmul_gflops", "jit", "memory"} <= set(r)
    assert [c["net"] for c in r["cases"]] == ["seed", "compact"]
    for c in r["cases"]:
        assert CASE_KEYS <= set(c)
        assert 0 < c["ms_min"] <= c["ms_per_step"] <= c["ms_max"] and c["pairs_per_s"] > 0
        if with_torch:
            assert c["torch_ms_per_step"] > 0 and c["ratio"] > 0
            # both start from the same weights, so their first losses agree
            assert c["first_loss"] == pytest.approx(c["torch_first_loss"], rel=1e-4)
        else:
            assert c["torch_ms_per_step"] is None and c["ratio"] is None
    assert r["matmul_gflops"] > 0 and r["matmul_gflops_1thread"] > 0
    convs = [L for L in r["layers"] if L["layer"].startswith("Conv2D")]
    assert len(convs) == 1 + 4  # seed: one conv; compact: four
    for L in r["layers"]:
        assert L["forward_ms"] > 0 and L["backward_ms"] > 0
    for L in convs:
        assert L["gflops_forward"] > 0 and L["gflops_backward"] > 0
    for k in ("first_step_s", "import_s", "total_s"):
        assert r["jit"][f"cold_{k}"] > 0 and r["jit"][f"warm_{k}"] > 0
    assert r["memory"]["peak_rss_mb"] > 0 and r["memory"]["step_mb"] >= 0
    assert [a["image_size"] for a in r["augment"]] == [105, 35] and all(a["ms"] > 0 for a in r["augment"])
    assert "skipped" in r["data"] or r["data"]["first_decode_s"] > 0
    assert len(r["load_before"]) == 3


def test_bench_quick_json_without_torch(capsys):
    r = run_bench(capsys, "--no-torch", "--reference", "--skip", "data")
    check_report(r, with_torch=False)
    assert r["environment"]["torch"] is None
    refs = [L for L in r["layers"] if "reference_forward_ms" in L]
    assert {L["net"] for L in refs} == {"seed"} and len(refs) == 2  # its conv and its pool
    assert all(L["reference_forward_ms"] > 0 and L["reference_backward_ms"] > 0 for L in refs)
    assert r["reference_step"]["seed"]["reference_ms_per_step"] > 0


def test_bench_quick_json_with_torch(capsys):
    pytest.importorskip("torch")
    r = run_bench(capsys, "--skip", "jit", "--skip", "data")
    # the skipped figures are empty but present
    assert r["jit"] == {}
    r["jit"] = {f"{kind}_{k}": 1.0 for kind in ("cold", "warm") for k in ("first_step_s", "import_s", "total_s")}
    r["data"] = {"skipped": "by the test"}
    check_report(r, with_torch=True)
    assert r["memory"]["torch_step_mb"] >= 0


def test_torch_twin_gets_the_same_gradient_step():
    """The PyTorch network really is identical: one SGD step gives the same loss on the next batch."""
    pytest.importorskip("torch")
    from npsiamese.bench import numpy_step
    net = SiameseNetwork("compact", image_size=28, seed=3)
    x1, x2, y = random_batch(28, 6, seed=1)
    torch_fn, numpy_fn = torch_step(net, x1, x2, y), numpy_step(net, x1, x2, y)
    for _ in range(2):
        assert torch_fn() == pytest.approx(numpy_fn(), rel=1e-4)


def test_bench_is_a_cli_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_random_batch_is_seeded():
    a, b = random_batch(8, 3, seed=5), random_batch(8, 3, seed=5)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_bench_table_with_everything_skipped(capsys):
    """The plain-text report copes with every optional figure left out."""
    skips = [a for s in ("layers", "jit", "memory", "augment", "data") for a in ("--skip", s)]
    assert main(["--quick", "--no-torch", "--keep-freed-memory", *skips]) == 0
    out = capsys.readouterr().out
    assert "training step" in out and "data: skipped (--skip data)" in out
    assert "keeps freed memory" in out
    assert "per layer" not in out and "JIT" not in out
