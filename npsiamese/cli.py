"""The ``npsiamese`` command line: one subcommand per job.

Each subcommand module registers its parser with ``add_<name>_parser`` and a
``func(args) -> exit code``; ``main`` dispatches. Expected errors (bad
arguments, missing data) print one clear line to stderr and exit with 2.
"""
from __future__ import annotations

import argparse
import json
import sys

EPILOG = """examples:
  npsiamese train                        the tiny demo: train 5 minutes on Omniglot small1, print accuracy
  npsiamese gradcheck                    check every backward pass against finite differences
  npsiamese data info                    what Omniglot data is available
  npsiamese evaluate --baseline mhd --data small2
  npsiamese bench                        time a training step, with PyTorch beside it if installed
Run 'npsiamese COMMAND --help' for the options of each command."""


def _gradcheck(args):
    from .gradcheck import format_table, run_all_checks
    results = run_all_checks(seed=args.seed)
    passed = all(r.passed for r in results)
    if args.json:
        print(json.dumps({"checks": [r.to_dict() for r in results], "passed": passed}, indent=2))
    else:
        print(format_table(results))
        failed = sum(not r.passed for r in results)
        print(f"\n{len(results) - failed} passed, {failed} failed (threshold: max relative error <= 1e-6, float64)")
    return 0 if passed else 1


def add_gradcheck_parser(sub):
    p = sub.add_parser(
        "gradcheck", help="check every layer's backward pass against finite differences",
        description="Compare the analytic gradients of every layer (each input and parameter), the loss "
                    "and a whole Siamese network against centred finite differences in float64. "
                    "A tensor passes when max|a-b| / max(|a|+|b|) <= 1e-6. Exits 1 if any check fails.",
        epilog="examples:\n  npsiamese gradcheck\n  npsiamese gradcheck --json | python -m json.tool",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--seed", type=int, default=0, help="seed of the random test inputs (default 0)")
    p.set_defaults(func=_gradcheck)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="npsiamese",
        description="Siamese convolutional networks for one-shot Omniglot, from scratch in NumPy and Numba.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__
    parser.add_argument("--version", action="version", version=f"npsiamese {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from .cli_data import add_data_parser, add_evaluate_parser
    from .cli_train import add_train_parser
    from .bench import add_bench_parser
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_gradcheck_parser(sub)
    add_data_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("npsiamese: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"npsiamese {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
