"""The tutorial notebooks: each one runs top to bottom, is committed clean, and never redefines a layer.

The notebooks run in a fresh ``python3`` kernel with a temporary working
directory (so run folders land there), the environment of the test run
(``NPSIAMESE_DATA``, ``MPLBACKEND``, ...) and a generous timeout; the issue
asks for at most 3 minutes each on 2 cores. Notebooks that read Omniglot are
skipped, with the reason, when ``NPSIAMESE_DATA`` is not set.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
NEEDS_DATA = {"05_omniglot_and_one_shot.ipynb", "06_training_tiny.ipynb"}
# the notebooks that read Omniglot also carry the `data` marker (`pytest -m data` selects them)
RUNS = [pytest.param(p, id=p.stem, marks=[pytest.mark.data] if p.name in NEEDS_DATA else []) for p in NOTEBOOKS]
TIMEOUT_S = 600  # per cell; the whole notebook should take well under 3 minutes

# A notebook uses the package's layers; it never writes its own.
FORBIDDEN = [
    (re.compile(r"^\s*class\s+\w+", re.MULTILINE), "defines a class"),
    (re.compile(r"^\s*def\s+\w*(forward|backward)\w*\s*\(", re.MULTILINE), "defines a forward/backward function"),
    (re.compile(r"^\s*def\s+(relu|sigmoid|conv2d|maxpool|dense_|l1_|bce|im2col|col2im)\w*\s*\(", re.MULTILINE),
     "re-implements a layer function"),
]


def _read(path):
    return nbformat.read(path, as_version=4)


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_all_six_notebooks_are_there():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"], NOTEBOOKS
    assert NEEDS_DATA <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    """No outputs and no execution counts: diffs show only what a person wrote."""
    nb = _read(path)
    dirty = [k for k, cell in enumerate(_code_cells(nb)) if cell.outputs or cell.execution_count is not None]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs or execution counts; clear them "
                       f"(Jupyter: Edit > Clear All Outputs) before committing.")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_the_package_and_defines_no_layer(path):
    nb = _read(path)
    source = "\n".join(cell.source for cell in _code_cells(nb))
    assert re.search(r"^\s*(import npsiamese|from npsiamese[.\w]* import)", source, re.MULTILINE), \
        f"{path.name} does not import npsiamese"
    for pattern, what in FORBIDDEN:
        match = pattern.search(source)
        assert match is None, f"{path.name} {what}: {match.group(0).strip()!r}; use the package's layers instead."


@pytest.mark.parametrize("source, caught", [
    ("class MyDense(Dense):\n    pass", True),
    ("import numpy as np\nclass Layer:\n    pass", True),
    ("def backward(self, dout):\n    return dout", True),
    ("    def relu_forward(x):\n        return x", True),
    ("def conv2d(x, w):\n    return x", True),
    ("def im2col(x):\n    return x", True),
    ("def one_percent_too_big(dout):\n    return dout", False),
    ("def conv_case(N, C):\n    return N", False),
    ("layer.backward = lambda dout: dout", False),
])
def test_forbidden_patterns_catch_a_layer_definition(source, caught):
    """Negative control for the check above."""
    assert any(p.search(source) for p, _ in FORBIDDEN) is caught


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_explains_the_jit_pause(path):
    first = _read(path).cells[0]
    assert first.cell_type == "markdown" and "numba" in first.source.lower() and "first" in first.source.lower()


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNS)
def test_notebook_runs(path, tmp_path):
    if path.name in NEEDS_DATA:
        if not os.environ.get("NPSIAMESE_DATA"):
            pytest.skip(f"{path.name} reads Omniglot: set NPSIAMESE_DATA to the folder holding "
                        f"images_background_small1.zip and images_background_small2.zip "
                        f"(e.g. NPSIAMESE_DATA=/work/shared/omniglot), or run "
                        f"`npsiamese data download small1 small2` and point NPSIAMESE_DATA at the folder.")
    nb = _read(path)
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")  # never open a window; the notebooks select inline figures themselves
    client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)  # raises CellExecutionError with the failing cell and its traceback
    errors = [out for cell in _code_cells(nb) for out in cell.outputs if out.output_type == "error"]
    assert not errors
