"""`npsiamese data ...` and `npsiamese evaluate ...` through a parser built like cli.py builds it."""
import argparse
import hashlib
import json
import re
import sys
import types

import numpy as np
import pytest
from PIL import Image

from npsiamese import download as dl
from npsiamese.cli_data import add_data_parser, add_evaluate_parser

from conftest import build_omniglot


def run_cli(argv):
    """Parse like `npsiamese ARGV` and run the chosen command; returns its exit code."""
    parser = argparse.ArgumentParser(prog="npsiamese")
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_parser(sub)
    add_evaluate_parser(sub)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


# --------------------------------------------------------------------------- evaluate

def test_evaluate_mhd_on_lake_runs_end_to_end(lake_runs_zip, capsys):
    assert run_cli(["evaluate", "--baseline", "mhd", "--lake-runs", lake_runs_zip, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ways"] == 20 and report["trials"] == 3 and report["shots"] == 1
    assert len(report["runs"]) == 3 and report["run_names"] == ["run01", "run02", "run03"]
    low, high = report["ci95"]
    assert report["accuracy"] >= 0.9 and 0 <= low <= report["accuracy"] <= high <= 1
    assert report["accuracy"] == pytest.approx(1 - np.mean(report["runs"]))


def test_evaluate_text_output_lists_runs(lake_runs_folder, capsys):
    argv = ["evaluate", "--baseline", "pixel", "--lake-runs", lake_runs_folder, "--image-size", 35]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "run01: error" in out and "run02: error" in out and "95% CI" in out and "35 px" in out


def test_evaluate_tasks_on_a_set(omniglot_synthetic_zip, omniglot_cache, capsys):
    argv = ["evaluate", "--baseline", "mhd", "--data", omniglot_synthetic_zip, "--ways", 5, "--trials", 12,
            "--within-alphabet", "--image-size", 35, "--seed", 3, "--json"]
    assert run_cli(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["ways"], report["trials"], report["shots"], report["image_size"]) == (5, 12, 1, 35)
    assert report["queries"] == 60 and report["within_alphabet"] is True and report["accuracy"] > 0.6
    assert run_cli(argv) == 0 and json.loads(capsys.readouterr().out) == report        # seeded


def test_evaluate_with_a_checkpoint(omniglot_synthetic_zip, omniglot_cache, tmp_path, monkeypatch, capsys):
    class TinyNet:
        image_size = 28

        def embed(self, x):
            return x.reshape(len(x), -1)

        def similarity_from_embeddings(self, e1, e2):
            return 1.0 / (1.0 + ((e1 - e2) ** 2).sum(1))

        @classmethod
        def load(cls, path, return_extra=False):
            return (cls(), {}) if return_extra else cls()
    module = types.ModuleType("npsiamese.network")
    module.SiameseNetwork = TinyNet
    monkeypatch.setitem(sys.modules, "npsiamese.network", module)
    (tmp_path / "m.npz").write_bytes(b"")
    argv = ["evaluate", "--checkpoint", tmp_path / "m.npz", "--data", omniglot_synthetic_zip, "--ways", 5,
            "--trials", 4, "--json"]
    assert run_cli(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scorer"] == "model" and report["image_size"] == 28 and report["trials"] == 4
    assert report["views"] == 1                    # a checkpoint without a training config: one view
    assert run_cli(argv + ["--views", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["views"] == 4
    assert run_cli(argv[:-1] + ["--image-size", "35"]) == 2
    assert "differs from the model's 28" in one_error_line(capsys)


@pytest.mark.parametrize("argv, message", [
    (["--lake-runs", "/no/such/all_runs.zip"], "no such file or folder"),
    (["--lake-runs", "LAKE", "--ways", "5"], "--ways applies to --data"),
    (["--data", "/no/such.zip"], "no such file or folder"),
    (["--data", "SET", "--ways", "40", "--within-alphabet"], "at least 40 characters"),
    (["--data", "SET", "--image-size", "200"], "image_size must be an integer in 1..105"),
    (["--data", "SET", "--ways", "0"], "ways must be >= 2"),
    (["--data", "SET", "--views", "8"], "--views applies to --checkpoint models"),
])
def test_evaluate_errors_are_one_line_exit_2(argv, message, lake_runs_zip, omniglot_synthetic_zip,
                                             omniglot_cache, capsys):
    argv = [{"LAKE": lake_runs_zip, "SET": omniglot_synthetic_zip}.get(a, a) for a in argv]
    assert run_cli(["evaluate", "--baseline", "mhd", *argv]) == 2
    err = one_error_line(capsys)
    assert err.startswith("npsiamese evaluate: error:") and message in err


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert run_cli(["evaluate", "--checkpoint", tmp_path / "none.npz", "--lake-runs", tmp_path]) == 2
    assert "npsiamese evaluate: error:" in one_error_line(capsys)


def test_argparse_rejects_missing_or_conflicting_choices(capsys):
    for argv in (["evaluate", "--lake-runs", "x"], ["evaluate", "--baseline", "mhd"],
                 ["evaluate", "--baseline", "mhd", "--checkpoint", "c", "--data", "d"],
                 ["evaluate", "--baseline", "knn", "--data", "d"], ["data"]):
        with pytest.raises(SystemExit) as exit_:
            run_cli(argv)
        assert exit_.value.code == 2


@pytest.mark.parametrize("argv", [["evaluate"], ["data"], ["data", "download"], ["data", "info"],
                                  ["data", "show"]])
def test_help_teaches_with_examples(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(argv + ["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "npsiamese " + " ".join(argv) in out


# --------------------------------------------------------------------------- data

def test_data_info_of_a_zip(omniglot_synthetic_zip, capsys):
    assert run_cli(["data", "info", omniglot_synthetic_zip]) == 0
    out = capsys.readouterr().out
    assert "3 alphabets, 15 characters, 300 images" in out
    assert "Beta_(test)" in out and "5 characters" in out


def test_data_info_of_the_data_folder(tmp_path, lake_runs_zip, capsys):
    build_omniglot(tmp_path, "images_background_small1", alphabets={"A": 2}, n_drawers=2)
    (tmp_path / "all_runs.zip").write_bytes(lake_runs_zip.read_bytes())
    assert run_cli(["data", "info", "--dir", tmp_path]) == 0
    out = capsys.readouterr().out
    assert "small1:" in out and "1 alphabets, 2 characters, 4 images" in out
    assert re.search(r"background: +missing \(npsiamese data download background\)", out)
    assert "3 runs of 20-way" in out


def test_data_info_errors(tmp_path, capsys):
    assert run_cli(["data", "info", "small2", "--dir", tmp_path]) == 2
    err = one_error_line(capsys)
    assert err.startswith("npsiamese data info: error:") and "npsiamese data download small2" in err


def test_data_show_draws_a_grid(omniglot_synthetic_zip, omniglot_cache, tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["data", "show", omniglot_synthetic_zip, "--out", out, "--characters", 3, "--drawers", 4,
            "--alphabet", "Gamma"]
    assert run_cli(argv) == 0
    with Image.open(out) as image:
        assert image.size[0] > 200 and image.size[1] > 150
    assert run_cli(argv[:-1] + ["Omega"]) == 2
    assert "no alphabet 'Omega'" in one_error_line(capsys)


def test_data_download_from_a_local_server(local_http_server, omniglot_synthetic_zip, tmp_path, monkeypatch,
                                           capsys):
    data = omniglot_synthetic_zip.read_bytes()
    monkeypatch.setitem(dl.FILES, "small1", dl.RemoteFile("images_background_small1.zip",
                                                          sha256=hashlib.sha256(data).hexdigest()))
    local_http_server.files["/images_background_small1.zip"] = (data, "ok")
    argv = ["data", "download", "small1", "--dir", tmp_path, "--base-url", local_http_server.url, "--quiet"]
    assert run_cli(argv) == 0
    assert "verified" in capsys.readouterr().out and (tmp_path / "images_background_small1.zip").exists()
    local_http_server.files["/images_background_small2.zip"] = (data[:100], "truncate")
    argv = ["data", "download", "small2", "--dir", tmp_path, "--base-url", local_http_server.url, "--quiet"]
    assert run_cli(argv) == 2
    assert "npsiamese data download: error:" in one_error_line(capsys)
    assert not (tmp_path / "images_background_small2.zip").exists()
