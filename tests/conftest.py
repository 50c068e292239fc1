"""Shared pytest fixtures.

Omniglot data fixtures (synthetic sets in the official layout, a synthetic
copy of Lake's 20-run benchmark, the real data via NPSIAMESE_DATA) live in
the ``omniglot_*`` / ``lake_runs_*`` functions below.
"""
from __future__ import annotations

import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

# --------------------------------------------------------------------------- Omniglot data fixtures

SYNTHETIC_ALPHABETS = {"Alpha": 6, "Beta_(test)": 5, "Gamma": 4}


def _character_strokes(rng):
    """A random 'character': 2-3 polylines of 3 points inside the 105x105 canvas."""
    return [rng.uniform(22, 83, size=(3, 2)) for _ in range(rng.integers(2, 4))]


def draw_character(strokes, rng, jitter=2.0, size=105):
    """Render one drawing of a character as a 1-bit PNG (bytes): black ink on white.

    Every drawer moves the stroke points by ~``jitter`` px and shifts the whole
    drawing by up to 3 px, so drawings of one character differ a little.
    """
    image = Image.new("1", (size, size), 1)
    draw = ImageDraw.Draw(image)
    shift = rng.uniform(-3, 3, size=2)
    for stroke in strokes:
        points = stroke + shift + rng.normal(0, jitter, size=stroke.shape)
        draw.line([tuple(p) for p in points], fill=0, width=4)
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def build_omniglot(root, set_name="images_background", alphabets=None, n_drawers=20, as_zip=True, seed=0):
    """Write a synthetic Omniglot set in the official layout; return the zip or set folder path.

    Layout: ``<set_name>/<Alphabet>/characterNN/XXXX_YY.png`` (XXXX = running
    character id, YY = drawer 01..n_drawers), 105x105 1-bit PNGs.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = {}
    char_id = 0
    for alphabet, n_chars in (alphabets or SYNTHETIC_ALPHABETS).items():
        for c in range(1, n_chars + 1):
            char_id += 1
            strokes = _character_strokes(rng)
            for d in range(1, n_drawers + 1):
                name = f"{set_name}/{alphabet}/character{c:02d}/{char_id:04d}_{d:02d}.png"
                files[name] = draw_character(strokes, rng)
    if as_zip:
        path = root / f"{set_name}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        return path
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / set_name


def build_lake_runs(root, n_runs=3, ways=20, as_zip=True, prefix="", seed=0):
    """Write a synthetic copy of Lake's ``all_runs`` benchmark; return the zip or folder.

    Each run ``runNN`` holds ``training/class01..class{ways}.png`` (one drawing
    per class), ``test/item01..png`` (another drawing of a class, in shuffled
    class order) and ``class_labels.txt`` with lines
    ``runNN/test/itemMM.png runNN/training/classKK.png``. ``prefix`` puts
    everything under one top folder (e.g. ``"all_runs/"``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = {}
    for r in range(1, n_runs + 1):
        run = f"run{r:02d}"
        strokes = [_character_strokes(rng) for _ in range(ways)]
        order = rng.permutation(ways)            # test item m shows class order[m]
        lines = []
        for k in range(ways):
            files[f"{prefix}{run}/training/class{k + 1:02d}.png"] = draw_character(strokes[k], rng)
        for m in range(ways):
            files[f"{prefix}{run}/test/item{m + 1:02d}.png"] = draw_character(strokes[order[m]], rng)
            lines.append(f"{run}/test/item{m + 1:02d}.png {run}/training/class{order[m] + 1:02d}.png")
        files[f"{prefix}{run}/class_labels.txt"] = ("\n".join(lines) + "\n").encode()
    if as_zip:
        path = root / "all_runs.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        return path
    folder = root / "all_runs"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def omniglot_cache(tmp_path, monkeypatch):
    """A private, empty npsiamese cache (XDG_CACHE_HOME) and a cleared in-memory cache."""
    from npsiamese import omniglot
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))
    omniglot.clear_memory_cache()
    yield tmp_path / "xdg_cache" / "npsiamese"
    omniglot.clear_memory_cache()


@pytest.fixture(scope="session")
def omniglot_synthetic_zip(tmp_path_factory):
    """A synthetic ``images_background.zip``: 3 alphabets (6, 5, 4 characters) x 20 drawers."""
    return build_omniglot(tmp_path_factory.mktemp("synthetic_zip"))


@pytest.fixture(scope="session")
def omniglot_synthetic_folder(tmp_path_factory):
    """The same synthetic set as an extracted folder ``.../images_background``."""
    return build_omniglot(tmp_path_factory.mktemp("synthetic_folder"), as_zip=False)


@pytest.fixture(scope="session")
def lake_runs_zip(tmp_path_factory):
    """Synthetic ``all_runs.zip``: 3 runs of 20-way one-shot, Lake's layout."""
    return build_lake_runs(tmp_path_factory.mktemp("lake_zip"))


@pytest.fixture(scope="session")
def lake_runs_folder(tmp_path_factory):
    """Synthetic extracted ``all_runs/`` folder: 2 runs of 20-way one-shot."""
    return build_lake_runs(tmp_path_factory.mktemp("lake_folder"), n_runs=2, as_zip=False, seed=1)


@pytest.fixture
def omniglot_dir():
    """The folder of the real Omniglot zips, from NPSIAMESE_DATA; skips the test when unset."""
    value = os.environ.get("NPSIAMESE_DATA")
    if not value:
        pytest.skip("NPSIAMESE_DATA not set: point it at a folder holding images_background.zip and "
                    "images_background_small1/2.zip (e.g. NPSIAMESE_DATA=/work/shared/omniglot "
                    "pytest -m data), or fetch them with `npsiamese data download background small1 small2`.")
    return Path(value)


class _FileHandler(BaseHTTPRequestHandler):
    """Serves ``server.files[path] = (bytes, mode)``; mode "truncate" sends half the body, then hangs up."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.files:
            self.send_error(404, "not found")
            return
        data, mode = self.server.files[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data)))   # always the full length
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if mode == "truncate" else data)

    def log_message(self, *args):   # keep pytest output clean
        pass


@pytest.fixture
def local_http_server():
    """An HTTP server on 127.0.0.1 (random port) for download tests; no internet needed.

    Put files with ``server.files["/path/file.zip"] = (data, "ok" | "truncate")``;
    ``server.url`` is the base URL and ``server.requests`` lists requested paths.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    server.files, server.requests = {}, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
