"""Command-line wiring for ``npsiamese data ...`` and ``npsiamese evaluate ...``.

``npsiamese/cli.py`` builds the top-level parser and calls
:func:`add_data_parser` and :func:`add_evaluate_parser`; each registers its
subcommands with ``set_defaults(func=...)``, where ``func(args)`` returns the
exit code. Expected failures (missing data, bad arguments, no network) print
one line to stderr and return 2; set ``NPSIAMESE_DEBUG=1`` to see the traceback.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np

from . import download as dl
from .omniglot import SETS, DataError, data_dir, load_omniglot, resolve_source, scan_omniglot
from .oneshot import (ModelScorer, evaluate_lake_runs, evaluate_tasks, load_lake_runs, make_tasks,
                      resolve_lake_runs)

DIR_HELP = "data folder for set names (default: $NPSIAMESE_DATA or the cache directory)"
_EXPECTED_ERRORS = (DataError, OSError, ValueError, TypeError, ImportError)


def _friendly(command):
    """Turn expected exceptions into one stderr line and exit code 2."""
    @functools.wraps(command)
    def run(args):
        try:
            return command(args)
        except _EXPECTED_ERRORS as err:
            if os.environ.get("NPSIAMESE_DEBUG"):
                raise
            print(f"npsiamese {getattr(args, 'command_name', '')}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("npsiamese: interrupted", file=sys.stderr)
            return 130
    return run


def _parser(subparsers, name, help_, description, epilog):
    p = subparsers.add_parser(name, help=help_, description=textwrap.fill(description, 78), epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(command_name=name)
    return p


# --------------------------------------------------------------------------- data

DATA_EPILOG = """\
where the files live:
  an explicit --dir or PATH, else $NPSIAMESE_DATA, else ~/.cache/npsiamese
  (or $XDG_CACHE_HOME/npsiamese). load_omniglot() looks in the same place.

examples:
  npsiamese data download small1 small2      # 2 small background sets (~3 MB)
  npsiamese data download all --dir ~/omniglot
  npsiamese data info                        # what is there, what is missing
  npsiamese data info ~/omniglot/images_background.zip
  npsiamese data show small1 --out grid.png
"""


def add_data_parser(subparsers):
    """Register ``data download|info|show`` on an ``argparse`` subparsers object."""
    data = _parser(subparsers, "data", "download, inspect and view the Omniglot data",
                   "Download, inspect and view the Omniglot files (Lake et al., 2015).", DATA_EPILOG)
    sub = data.add_subparsers(dest="data_command", metavar="{download,info,show}", required=True)

    p = _parser(sub, "download", "fetch and verify official files",
                "Fetch official Omniglot files, verify them (SHA-256 or alphabet/character/image counts) "
                "and write them atomically.",
                "files:\n  small1, small2      images_background_small1/2.zip (5 alphabets each)\n"
                "  background          images_background.zip (30 alphabets, 19,280 images)\n"
                "  evaluation          images_evaluation.zip (20 alphabets, 13,180 images)\n"
                "  runs                all_runs.zip (Lake's 20 one-shot runs)\n"
                "  all                 all of the above\n\n"
                "examples:\n  npsiamese data download small1\n"
                "  npsiamese data download all --dir ~/omniglot\n"
                f"  {dl.BASE_URL_ENV}=http://mirror/omniglot npsiamese data download background\n")
    p.add_argument("names", nargs="+", choices=[*dl.FILES, "all"], metavar="NAME",
                   help="small1, small2, background, evaluation, runs or all")
    p.add_argument("--dir", help="destination folder (default: $NPSIAMESE_DATA or the cache directory)")
    p.add_argument("--base-url", metavar="URL", help=f"download from here instead of {dl.BASE_URL}")
    p.add_argument("--force", action="store_true", help="download again even if a verified copy exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_friendly(_cmd_download), command_name="data download")

    p = _parser(sub, "info", "count alphabets, characters, images",
                "Print alphabets, characters and images of an Omniglot set, or of every file found in the "
                "data folder when PATH is left out.",
                "examples:\n  npsiamese data info\n  npsiamese data info small2\n"
                "  npsiamese data info ~/omniglot/images_background.zip\n")
    p.add_argument("path", nargs="?", metavar="PATH", help="a set name (small1, ...), a zip or a folder")
    p.add_argument("--dir", help=DIR_HELP)
    p.set_defaults(func=_friendly(_cmd_info), command_name="data info")

    p = _parser(sub, "show", "draw a grid of characters",
                "Draw a grid: one row per character, one column per drawer (matplotlib, saved to a file).",
                "examples:\n  npsiamese data show small1 --out grid.png\n"
                "  npsiamese data show background --alphabet Greek --characters 6 --out greek.png\n")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="a set name or path (default: the first set found)")
    p.add_argument("--out", required=True, help="image file to write, e.g. grid.png")
    p.add_argument("--dir", help="data folder for set names")
    p.add_argument("--alphabet", help="only characters of this alphabet")
    p.add_argument("--characters", type=int, default=8, help="rows (default 8)")
    p.add_argument("--drawers", type=int, default=10, help="columns (default 10)")
    p.add_argument("--image-size", type=int, default=105, help="downsample to this size first (default 105)")
    p.add_argument("--seed", type=int, default=0, help="which characters (default 0)")
    p.set_defaults(func=_friendly(_cmd_show), command_name="data show")
    return data


def _cmd_download(args):
    names = list(dl.FILES) if "all" in args.names else list(dict.fromkeys(args.names))
    for name in names:
        path = dl.download(name, dest_dir=args.dir, base_url=args.base_url, force=args.force,
                           progress=not args.quiet)
        print(f"{name}: {path} (verified)")
    return 0


def _is_lake_runs(path):
    if Path(path).is_dir():
        return any(Path(path).rglob("class_labels.txt"))
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("class_labels.txt") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _describe(path):
    """Lines describing one Omniglot set or Lake runs file: a summary, then one per alphabet."""
    if _is_lake_runs(path):
        runs = load_lake_runs(path)
        return [f"Lake's one-shot benchmark, {len(runs)} runs of {len(runs[0].training)}-way "
                f"classification ({sum(len(r.test) for r in runs)} test items)"]
    listing = scan_omniglot(path)
    n_a, n_c, n_i = listing.counts
    lines = [f"{n_a} alphabets, {n_c} characters, {n_i} images"]
    alphabets = np.array(listing.alphabet_names)
    for a in dict.fromkeys(listing.alphabet_names):
        chars = {c for c, x in zip(listing.character_names, listing.alphabet_names) if x == a}
        lines.append(f"  {a:<45} {len(chars):4d} characters {int((alphabets == a).sum()):6d} images")
    return lines


def _find(name, dir_):
    """The file or folder for a set name, ``runs``, or a path."""
    return resolve_lake_runs(name, dir_) if name == "runs" else resolve_source(name, dir_)


def _cmd_info(args):
    if args.path is not None:
        path = _find(args.path, args.dir)
        lines = _describe(path)
        print("\n".join([f"{path}: {lines[0]}", *lines[1:]]))
        return 0
    folder = data_dir(args.dir)
    print(f"data folder: {folder}")
    for name in [*SETS, "runs"]:
        try:
            path = _find(name, args.dir)
        except DataError:
            print(f"{name + ':':<12} missing (npsiamese data download {name})")
            continue
        print(f"{name + ':':<12} {_describe(path)[0]}  ({path.name})")
    return 0


def _cmd_show(args):
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # no GUI, no global backend switch
    from matplotlib.figure import Figure
    name = args.path
    if name is None:
        smallest_first = ("small1", "small2", "background", "evaluation")
        name = next((n for n in smallest_first if _exists(n, args.dir)), None)
        if name is None:
            raise DataError(f"data show: no Omniglot set in {data_dir(args.dir)}; pass PATH or run "
                            f"`npsiamese data download small1`.")
    ds = load_omniglot(name, args.image_size, data_dir=args.dir)
    chars = np.arange(ds.n_characters)
    if args.alphabet is not None:
        if args.alphabet not in ds.alphabets:
            raise ValueError(f"data show: no alphabet {args.alphabet!r}; this set has: "
                             f"{', '.join(ds.alphabets)}.")
        chars = chars[ds.character_alphabet == ds.alphabets.index(args.alphabet)]
    rng = np.random.default_rng(args.seed)
    chars = np.sort(rng.choice(chars, size=min(args.characters, chars.size), replace=False))
    n_cols = max(1, args.drawers)
    fig = Figure(figsize=(1.0 * n_cols + 2.5, 1.0 * len(chars) + 0.5))
    FigureCanvasAgg(fig)
    for r, c in enumerate(chars):
        images = np.flatnonzero(ds.character == c)[:n_cols]
        for k, index in enumerate(images):
            ax = fig.add_subplot(len(chars), n_cols, r * n_cols + k + 1)
            ax.imshow(ds.images[index], cmap="gray_r", vmin=0, vmax=1)   # ink (1) drawn black
            ax.set_xticks([]), ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(ds.characters[c].replace("/", "\n"), rotation=0, ha="right", va="center",
                              fontsize=7)
    fig.suptitle(f"{ds.name}: {len(chars)} characters x {n_cols} drawers ({ds.image_size} px)")
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0


def _exists(name, dir_):
    try:
        resolve_source(name, dir_)
        return True
    except DataError:
        return False


# --------------------------------------------------------------------------- evaluate

EVALUATE_EPILOG = """\
a task: WAYS new characters with SHOTS images each (the support set) and one query
image per character; each query goes to the class of its most similar support image.
--within-alphabet takes the characters of a task from one alphabet, the support and the
queries from two different drawers (Lake's and Koch's protocol). Accuracy comes with a
95% confidence interval (normal approximation over tasks / runs).

baselines: pixel = nearest neighbour on raw pixels; mhd = modified Hausdorff distance
between centred ink-point sets (Lake's runs: 38.8% error published).

views: a model trained with --symmetries 8 knows turned and mirrored characters as
characters of their own, so it can also look at a pair with both images turned alike;
--views 8 averages p(same) over the 8 symmetries of the square (a test-time ensemble,
8 tower passes per image). A checkpoint remembers its run's --test-views (tiny and
full presets: 8); --views 1 gives the plain, single-view accuracy.

examples:
  npsiamese evaluate --baseline mhd --lake-runs all_runs.zip
  npsiamese evaluate --baseline pixel --data small2 --within-alphabet --trials 400
  npsiamese evaluate --checkpoint runs/model.npz --data small2 --ways 5 --shots 1 --json
  npsiamese evaluate --checkpoint runs/model.npz --data small2 --within-alphabet --views 1
"""


def add_evaluate_parser(subparsers):
    """Register ``evaluate`` on an ``argparse`` subparsers object."""
    p = _parser(subparsers, "evaluate", "one-shot accuracy of a model or baseline",
                "One-shot classification accuracy of a trained model or a classic baseline, on Lake's "
                "20-run benchmark or on seeded N-way k-shot tasks from an Omniglot set.", EVALUATE_EPILOG)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--checkpoint", metavar="CKPT", help="a SiameseNetwork checkpoint")
    who.add_argument("--baseline", choices=["pixel", "mhd"], help="a classic scorer instead of a model")
    on = p.add_mutually_exclusive_group(required=True)
    on.add_argument("--lake-runs", metavar="PATH", help="all_runs.zip, its folder, or 'runs' (data folder)")
    on.add_argument("--data", metavar="PATH", help="a set name (small2, evaluation, ...) or zip / folder")
    p.add_argument("--ways", type=int, help="classes per task (default 20; --data only)")
    p.add_argument("--shots", type=int, help="support images per class (default 1; --data only)")
    p.add_argument("--trials", type=int, help="number of tasks (default 400; --data only)")
    p.add_argument("--within-alphabet", action="store_true",
                   help="characters of a task from one alphabet (--data only)")
    p.add_argument("--image-size", type=int, help="image size (default: the model's, or 105)")
    p.add_argument("--views", type=int, choices=[1, 4, 8],
                   help="model only: average p(same) over the pair turned (4) and also mirrored (8) alike; "
                        "1 = plain (default: the views its training run evaluated with)")
    p.add_argument("--seed", type=int, default=0, help="seed of the task list (default 0)")
    p.add_argument("--dir", help=DIR_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=_friendly(_cmd_evaluate))
    return p


def _pick(value, default):
    return default if value is None else value


def _scorer(args):
    """``(scorer, description, image size)`` from --checkpoint / --baseline and --image-size."""
    if args.checkpoint is not None:
        scorer = ModelScorer.from_checkpoint(args.checkpoint, views=args.views)
        if args.image_size not in (None, scorer.image_size):
            raise ValueError(f"--image-size {args.image_size} differs from the model's {scorer.image_size}; "
                             f"leave it out.")
        views = f", {scorer.views} views" if scorer.views > 1 else ""
        return scorer, f"model {args.checkpoint}{views}", scorer.image_size
    if args.views is not None:
        raise ValueError("--views applies to --checkpoint models; the baselines have one view.")
    from .baselines import get_baseline   # imports Numba: only when evaluating
    return get_baseline(args.baseline), f"{args.baseline} baseline", _pick(args.image_size, 105)


def _cmd_evaluate(args):
    if args.lake_runs is not None:
        given = [f for f in ("ways", "shots", "trials") if getattr(args, f) is not None]
        given += ["within_alphabet"] if args.within_alphabet else []
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} applies to --data tasks; Lake's runs are fixed "
                             f"20-way 1-shot.")
    scorer, label, size = _scorer(args)
    progress = not args.json and sys.stderr.isatty()
    report = {"scorer": args.baseline or "model", "image_size": size, "views": getattr(scorer, "views", 1)}
    if args.lake_runs is not None:
        runs = load_lake_runs(args.lake_runs, size, data_dir=args.dir)
        result = evaluate_lake_runs(scorer, runs, progress=progress)
        report.update(benchmark="lake-runs", source=str(args.lake_runs),
                      runs=[round(float(e), 6) for e in result.errors], run_names=result.names)
        what = f"Lake's {result.trials} runs ({args.lake_runs})"
    else:
        ds = load_omniglot(args.data, size, data_dir=args.dir)
        tasks = make_tasks(ds, _pick(args.ways, 20), _pick(args.shots, 1), _pick(args.trials, 400),
                           within_alphabet=args.within_alphabet, seed=args.seed)
        result = evaluate_tasks(scorer, ds.images, tasks, progress=progress)
        report.update(benchmark="tasks", source=str(args.data), within_alphabet=args.within_alphabet,
                      seed=args.seed)
        kind = "within-alphabet" if args.within_alphabet else "unstructured"
        what = f"{result.trials} {kind} tasks on {ds.name}"
    low, high = result.ci95
    report.update(accuracy=result.accuracy, error=1.0 - result.accuracy, ci95=[low, high],
                  ci95_method="normal approximation over tasks", ways=result.ways, shots=result.shots,
                  trials=result.trials, queries=int(result.total.sum()))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{label}, {result.ways}-way {result.shots}-shot, {what}, {size} px")
    if args.lake_runs is not None:
        for name, err in zip(result.names, result.errors):
            print(f"  {name}: error {100 * err:5.1f}%")
    print(f"accuracy {100 * result.accuracy:.1f}% (95% CI {100 * low:.1f}-{100 * high:.1f}%), "
          f"error {100 * (1 - result.accuracy):.1f}%")
    return 0
