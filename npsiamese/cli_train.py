"""``npsiamese train``: the command line over :class:`npsiamese.train.Trainer`."""
from __future__ import annotations

import argparse
import json
import time

from .network import SiameseNetwork

EPILOG = """presets:
  tiny  (default) 5 alphabets of images_background_small1 at 35 px, under 5 minutes on 2 cores;
        tested on the alphabets of small2 that small1 lacks.
  full  25 of the 30 background alphabets at 35 px, about 1 hour; tested on the 5 held-out ones.
  koch  the paper's network and recipe at 105 px (SGD, per-epoch decay, early stopping);
        many hours on a CPU: use --minutes and --resume.

examples:
  npsiamese train                                 the tiny demo
  npsiamese train --preset full --out runs/full
  npsiamese train --minutes 1 --image-size 35     any setting can be changed
  npsiamese train --resume runs/full              continue an interrupted run
  npsiamese evaluate --checkpoint runs/full/best.npz --data background --within-alphabet

Every run folder holds config.json, best.npz, last.npz, metrics.csv, results.json,
curves.png and task.png. Ctrl-C saves last.npz first."""


def add_train_parser(sub):
    p = sub.add_parser(
        "train", help="train a Siamese network on Omniglot and report one-shot accuracy",
        description="Train a shared-weight Siamese network on Omniglot background alphabets, validate on "
                    "20-way within-alphabet one-shot tasks from alphabets it never sees, keep the best "
                    "checkpoint, and finish with the accuracy next to the MHD and pixel baselines on the "
                    "same tasks. Data comes from --data, else $NPSIAMESE_DATA, else the cache "
                    "(npsiamese data download).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["tiny", "full", "koch"], default="tiny", help="starting settings (default tiny)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.npz")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<timestamp>)")
    p.add_argument("--data", metavar="DIR", help="folder with the Omniglot zips")
    g = p.add_argument_group("budget (the first limit reached stops training)")
    g.add_argument("--minutes", type=float, help="wall-clock minutes of training")
    g.add_argument("--steps", type=int, help="optimiser steps")
    g.add_argument("--epochs", type=float, help="passes over the training images")
    g.add_argument("--pairs", type=int, help="training pairs")
    g = p.add_argument_group("model and data")
    g.add_argument("--image-size", type=int, help="side of the (downsampled) images, e.g. 28, 35, 52, 105")
    g.add_argument("--arch", choices=["compact", "seed", "koch"], help="tower architecture")
    g.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")),
                   help="compact net: conv channels per block, e.g. 32,64,64,64")
    g.add_argument("--embedding", type=int, help="compact net: embedding size")
    g.add_argument("--distort", type=float, help="probability of each affine distortion component (0 = off)")
    g.add_argument("--symmetries", type=int, choices=[1, 8],
                   help="groups: 8 makes each of a character's 8 rotations/mirror images its own class")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=["adam", "sgd"])
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", choices=["cosine", "koch", "constant"])
    g.add_argument("--batch", choices=["groups", "pairs"],
                   help="groups: P characters x K images, all pairs; pairs: classic balanced pairs")
    g.add_argument("--classes-per-batch", type=int, help="groups: P")
    g.add_argument("--images-per-class", type=int, help="groups: K")
    g.add_argument("--batch-pairs", type=int, help="pairs: pairs per step")
    g = p.add_argument_group("validation")
    g.add_argument("--val-every", type=int, help="steps between validations")
    g.add_argument("--patience", type=int, help="stop after this many validations without improvement (0 = off)")
    g.add_argument("--final-trials", type=int, help="20-way tasks in the final evaluation (default 400)")
    g.add_argument("--test-views", type=int, choices=[1, 4, 8],
                   help="final evaluation: average p(same) over the pair turned (4) and mirrored (8) alike; "
                        "1 = plain (tiny and full: 8, koch: 1)")
    g.add_argument("--no-baselines", action="store_true", help="skip the MHD and pixel baselines")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _overrides(args):
    keys = ["out", "data", "minutes", "steps", "epochs", "pairs", "image_size", "arch", "widths", "embedding",
            "distort", "symmetries", "optimizer", "lr", "weight_decay", "schedule", "batch", "classes_per_batch",
            "images_per_class", "batch_pairs", "val_every", "patience", "final_trials", "test_views", "seed"]
    d = {k: getattr(args, k) for k in keys}
    if args.no_baselines:
        d["baselines"] = ()
    return d


def _train(args):
    from . import report
    from .train import Trainer, config_for, task_alphabets, validation_tasks

    t_start = time.perf_counter()
    if args.resume:
        trainer = Trainer.resume(args.resume, progress=not args.quiet)
    else:
        trainer = Trainer(config_for(args.preset, **_overrides(args)), progress=not args.quiet)
    c, net = trainer.cfg, trainer.net
    print(f"npsiamese train: preset {c.preset}, {c.image_size}x{c.image_size} images, "
          f"{net.num_parameters():,} parameters, run folder {trainer.out}")
    print(f"  train: {trainer.train.name} ({trainer.train.n_alphabets} alphabets, {trainer.train.n_characters} "
          f"characters, {len(trainer.train)} images); validation: {', '.join(task_alphabets(trainer.val))}")
    print(f"  data loaded in {trainer.load_seconds:.1f} s; the first steps also compile the Numba kernels")
    try:
        state = trainer.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: saved {trainer.out / 'last.npz'} at step {trainer.state.step}; "
              f"continue with: npsiamese train --resume {trainer.out}")
        return 130
    print(f"trained {state.step} steps, {state.pairs:,} pairs in {state.seconds:.0f} s; "
          f"best validation accuracy {100 * state.best_acc:.1f}% at step {state.best_step}")

    best = SiameseNetwork.load(trainer.out / "best.npz")
    tasks = validation_tasks(trainer.val, c.final_trials, seed=report.FINAL_SEED)
    results = report.final_evaluation(best, trainer.val, tasks, baselines=c.baselines, views=c.test_views)
    print(report.results_table(results, tasks[0].ways, views=c.test_views))
    report.plot_curves(trainer.out / "metrics.csv", trainer.out / "curves.png")
    report.plot_task(best, trainer.val, tasks[0], trainer.out / "task.png", views=c.test_views)
    total = time.perf_counter() - t_start
    report.write_results(trainer.out / "results.json", results,
                         {"total_seconds": total, "train_seconds": state.seconds, "steps": state.step,
                          "pairs": state.pairs, "validation_alphabets": task_alphabets(trainer.val),
                          "config": json.loads(c.to_json())})
    print(f"total time {total:.0f} s (data, compilation, training, evaluation); results in {trainer.out}")
    return 0
