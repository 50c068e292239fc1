"""Training: a short run lowers the loss, resume equals an uninterrupted run, NaN stops cleanly,
checkpoints round-trip, the CLI runs end to end. All on small synthetic Omniglot sets."""
import json
import sys

import numpy as np
import pytest
from conftest import build_omniglot

from npsiamese.cli import main
from npsiamese.network import SiameseNetwork
from npsiamese.train import Trainer, config_for

SMALL = dict(image_size=16, widths=(4, 8), embedding=16, classes_per_batch=4, images_per_class=3,
             val_every=4, val_trials=5, final_trials=5, minutes=None, distort=0.5)


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    """Synthetic small1 (alphabets A, B) and small2 (A again, plus C and D, as the real sets overlap)."""
    root = tmp_path_factory.mktemp("omniglot")
    build_omniglot(root, "images_background_small1", {"Alpha": 6, "Beta": 6}, n_drawers=6, seed=1)
    build_omniglot(root, "images_background_small2", {"Alpha": 6, "Gamma": 6, "Delta": 5}, n_drawers=6, seed=2)
    return root


@pytest.fixture
def cfg(synthetic_data, omniglot_cache):
    def make(**kw):
        settings = dict(SMALL, data=str(synthetic_data))
        settings.update(kw)
        return config_for("tiny", **settings)
    return make


def test_validation_alphabets_are_not_trained_on(cfg, tmp_path):
    t = Trainer(cfg(steps=1), out=tmp_path / "run", progress=False)
    assert set(t.val.alphabets) == {"Gamma", "Delta"}
    assert not set(t.val.alphabets) & set(t.train.alphabets)
    # tasks need `ways` characters in one alphabet: 6-way here, so Delta (5 characters) takes no part
    from npsiamese.train import task_alphabets
    assert task_alphabets(t.val) == ["Gamma"] and t.val_tasks[0].ways == 6


def test_a_short_run_lowers_the_loss(cfg, tmp_path):
    t = Trainer(cfg(steps=80, lr=3e-3, distort=0.0, schedule="constant"), out=tmp_path / "run", progress=False)
    losses = [t.step()[0] for _ in range(80)]
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:15])


def test_run_writes_the_run_folder(cfg, tmp_path):
    out = tmp_path / "run"
    state = Trainer(cfg(steps=8), out=out, progress=False).run()
    assert state.step == 8
    for name in ("config.json", "best.npz", "last.npz", "metrics.csv"):
        assert (out / name).is_file(), name
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,pairs,loss,train_acc,val_acc,lr,seconds"
    assert len(lines) == 1 + 8
    # validation at steps 4 and 8
    assert [row.split(",")[4] != "" for row in lines[1:]] == [False] * 3 + [True] + [False] * 3 + [True]
    assert json.loads((out / "config.json").read_text())["steps"] == 8
    best = SiameseNetwork.load(out / "best.npz")
    assert best.image_size == 16


def test_same_seed_same_metrics(cfg, tmp_path):
    a = Trainer(cfg(steps=6), out=tmp_path / "a", progress=False).run()
    b = Trainer(cfg(steps=6), out=tmp_path / "b", progress=False).run()
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    c = Trainer(cfg(steps=6, seed=1), out=tmp_path / "c", progress=False).run()
    assert strip(c.history) != strip(a.history)


def test_resume_after_interrupt_equals_uninterrupted_run(cfg, tmp_path, monkeypatch):
    full = Trainer(cfg(steps=12), out=tmp_path / "full", progress=False)
    full.run()

    part = Trainer(cfg(steps=12), out=tmp_path / "part", progress=False)
    real_step = Trainer.step

    def interrupt_at_7(self):
        if self.state.step == 6:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", interrupt_at_7)
    with pytest.raises(KeyboardInterrupt):
        part.run()
    monkeypatch.setattr(Trainer, "step", real_step)
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    assert resumed.state.step == 6
    resumed.run()

    assert resumed.state.step == 12
    for (name, p, _), (_, q, _) in zip(full.net.named_parameters(), resumed.net.named_parameters()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(full.state.history) == strip(resumed.state.history)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(cfg, tmp_path, monkeypatch):
    t = Trainer(cfg(steps=20), out=tmp_path / "run", progress=False)
    real = t.net.pairs_loss_and_grad

    def poisoned(*args, **kw):
        loss = real(*args, **kw)
        return float("nan") if t.state.step >= 5 else loss

    t.net.pairs_loss_and_grad = poisoned
    with pytest.raises(RuntimeError, match=r"nan at step 6.*learning rate.*last.npz \(step 4\)"):
        t.run()
    assert SiameseNetwork.load(tmp_path / "run" / "last.npz", return_extra=True)[1]["state"] is not None


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_huge_learning_rate_is_reported_not_crashed(cfg, tmp_path):
    t = Trainer(cfg(steps=50, lr=1e30, optimizer="sgd", schedule="constant"), out=tmp_path / "run", progress=False)
    with pytest.raises(RuntimeError, match="learning rate"):
        t.run()


def test_bad_settings_are_named(cfg, tmp_path):
    with pytest.raises(ValueError, match="preset"):
        config_for("huge")
    with pytest.raises(ValueError, match="unknown setting"):
        config_for("tiny", colour="red")
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(cfg(steps=1, optimizer="rmsprop"), out=tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="every alphabet of val_set"):
        Trainer(cfg(steps=1, val_set="small1"), out=tmp_path / "r", progress=False)


def test_cli_train_end_to_end_and_evaluate_json(synthetic_data, omniglot_cache, tmp_path, capsys):
    out = tmp_path / "cli_run"
    args = ["train", "--data", str(synthetic_data), "--out", str(out), "--steps", "8", "--image-size", "16",
            "--widths", "4,8", "--embedding", "16", "--classes-per-batch", "4", "--images-per-class", "3",
            "--val-every", "4", "--final-trials", "5", "--symmetries", "1", "--quiet"]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["symmetries"] == 1  # the tiny preset's is 8
    printed = capsys.readouterr().out
    assert "model" in printed and "mhd" in printed and "pixel" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"model", "model_1view", "mhd", "pixel", "total_seconds"}  # tiny: 8 test views
    assert 0 <= results["model"]["accuracy"] <= 1 and results["config"]["test_views"] == 8
    assert "averaged over 8 views" in printed
    for png in ("curves.png", "task.png"):
        assert (out / png).stat().st_size > 1000
    code = main(["evaluate", "--checkpoint", str(out / "best.npz"), "--data", str(synthetic_data / "images_background_small2.zip"),
                 "--ways", "5", "--trials", "4", "--within-alphabet", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ways"] == 5 and report["trials"] == 4 and 0 <= report["accuracy"] <= 1
    assert report["views"] == 8                    # the checkpoint remembers its run's test views
    assert main(["evaluate", "--checkpoint", str(out / "best.npz"), "--data", str(synthetic_data / "images_background_small2.zip"),
                 "--ways", "5", "--trials", "4", "--views", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["views"] == 1


def test_embedding_accuracy_with_views_matches_the_model_scorer(cfg, tmp_path):
    """The trainer's fast evaluation (each image embedded once per view) = ModelScorer on the same tasks."""
    from npsiamese.oneshot import ModelScorer, evaluate_tasks
    from npsiamese.train import embedding_accuracy, validation_tasks
    t = Trainer(cfg(steps=6), out=tmp_path / "r", progress=False)
    t.run()
    tasks = validation_tasks(t.val, 6, seed=3)
    for views in (1, 8):
        fast = embedding_accuracy(t.net, t.val, tasks, views=views)
        slow = evaluate_tasks(ModelScorer(t.net, views=views), t.val.images, tasks)
        assert fast.correct.tolist() == slow.correct.tolist()
    with pytest.raises(ValueError, match="test_views: views must be 1"):
        Trainer(cfg(steps=1, test_views=2), out=tmp_path / "r2", progress=False)


def test_missing_named_set_is_downloaded(synthetic_data, omniglot_cache, tmp_path, monkeypatch):
    """A fresh install has no data: the trainer fetches the official file, then loads it."""
    import shutil

    import npsiamese.train as train_mod
    empty = tmp_path / "empty"
    empty.mkdir()
    fetched = []

    def fake_download(name, dest_dir=None):
        fetched.append(name)
        stem = {"small1": "images_background_small1", "small2": "images_background_small2"}[name]
        shutil.copy(synthetic_data / f"{stem}.zip", empty / f"{stem}.zip")

    monkeypatch.setattr(train_mod, "download", fake_download)
    t = Trainer(config_for("tiny", **dict(SMALL, data=str(empty), steps=1)), out=tmp_path / "run", progress=False)
    assert fetched == ["small1", "small2"]
    assert set(t.val.alphabets) == {"Gamma", "Delta"}


def test_koch_preset_runs_and_resumes(cfg, tmp_path):
    """The paper's preset (105 px, Koch net, SGD with the per-epoch schedule) trains a step, saves and resumes."""
    settings = dict(data=cfg().data, train_set="small1", val_set="small2", val_alphabets=0, steps=2,
                    batch_pairs=2, val_every=2, val_trials=1, final_trials=1, epochs=None)
    c = config_for("koch", **settings)
    assert (c.arch, c.image_size, c.optimizer, c.schedule, c.init) == ("koch", 105, "sgd", "koch", "koch")
    t = Trainer(c, out=tmp_path / "koch", progress=False)
    assert t.net.embedding_dim == 4096 and t.optimizer.momentum == 0.5   # the ramp starts at 0.5
    state = t.run()
    assert state.step == 2 and (tmp_path / "koch" / "last.npz").is_file()
    resumed = Trainer.resume(tmp_path / "koch", progress=False)
    assert resumed.state.step == 2 and resumed.cfg.arch == "koch"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux only)")
def test_keep_freed_memory_takes_effect_on_linux():
    from npsiamese.train import keep_freed_memory
    assert keep_freed_memory() is True
