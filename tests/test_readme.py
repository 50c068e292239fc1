"""The README's Python example runs as written and its set-up commands match .ci/run."""
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs_and_predicts_probabilities(capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Ten lines of Python\n\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    p = namespace["net"].predict(namespace["x1"], namespace["x2"])
    assert p.shape == (8,) and np.all((p > 0) & (p < 1))
    assert np.isfinite(namespace["loss"])


def test_ci_installs_and_tests_as_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in readme and 'pip install --quiet -e ".[dev]"' in ci
    assert "python -m pytest" in readme and "python -m pytest" in ci
