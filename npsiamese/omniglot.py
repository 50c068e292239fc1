"""Omniglot images: read the official zips (or their folders), downsample, cache.

The official release stores one 105x105 1-bit PNG per drawing::

    images_background/Greek/character03/0396_07.png
    <set>/<Alphabet>/characterNN/XXXX_YY.png      (YY = the drawer, 01..20)

:func:`load_omniglot` turns such a zip or folder into an :class:`Omniglot`
object: a float32 array ``images`` of shape ``(n, S, S)`` with ink = 1 and
background = 0, plus per-image ``alphabet``, ``character`` and ``drawer``
index arrays. Decoding the 19,280 background PNGs takes a couple of seconds,
so the result is kept in memory and written to an on-disk cache; the second
load reads one ``.npz`` file.

Where the data comes from (first match wins): an explicit path or
``data_dir`` argument, else the ``NPSIAMESE_DATA`` environment variable, else
the per-user cache directory ``$XDG_CACHE_HOME/npsiamese`` (default
``~/.cache/npsiamese``), which is also where ``npsiamese data download`` puts
files.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

NATIVE_SIZE = 105
# Short names accepted by load_omniglot and `npsiamese data download`.
SETS = {
    "background": "images_background",
    "evaluation": "images_evaluation",
    "small1": "images_background_small1",
    "small2": "images_background_small2",
}
CACHE_FORMAT = 1  # bump when the .npz content changes, so old caches are ignored


class DataError(ValueError):
    """The data on disk is missing, corrupt, or not laid out as expected."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or folder that was asked for does not exist."""


# --------------------------------------------------------------------------- where

def cache_dir() -> Path:
    """Per-user cache directory: ``$XDG_CACHE_HOME/npsiamese`` or ``~/.cache/npsiamese``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "npsiamese"


def data_dir(explicit=None) -> Path:
    """The folder that holds the Omniglot files: ``explicit`` > ``$NPSIAMESE_DATA`` > :func:`cache_dir`."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("NPSIAMESE_DATA")
    return Path(env).expanduser() if env else cache_dir()


def _dir_origin(explicit):
    if explicit is not None:
        return "the data_dir argument"
    return "NPSIAMESE_DATA" if os.environ.get("NPSIAMESE_DATA") else "the default cache directory"


def resolve_source(name_or_path, search_dir=None) -> Path:
    """Find the zip or folder for a set name (``small1`` ...) or return an existing path.

    A name is looked up in :func:`data_dir` as ``<file>.zip`` first, then as the
    extracted folder ``<file>/``. Raises :class:`DataNotFoundError` saying where
    it looked and which command downloads the file.
    """
    name = str(name_or_path)
    if name in SETS:
        folder = data_dir(search_dir)
        stem = SETS[name]
        for candidate in (folder / f"{stem}.zip", folder / stem):
            if candidate.exists():
                return candidate
        dir_flag = f" --dir {folder}" if search_dir is not None else ""
        raise DataNotFoundError(
            f"load_omniglot: Omniglot set '{name}' not found: looked for {stem}.zip and the folder "
            f"{stem}/ in {folder} (from {_dir_origin(search_dir)}). Put the official file there, set "
            f"NPSIAMESE_DATA to the folder that holds it, or run `npsiamese data download {name}{dir_flag}`."
        )
    path = Path(name).expanduser()
    if not path.exists():
        raise DataNotFoundError(
            f"load_omniglot: no such file or folder: {path}. Pass one of {sorted(SETS)} or the path of an "
            f"Omniglot zip / extracted folder (layout <set>/<Alphabet>/characterNN/XXXX_YY.png)."
        )
    return path


# --------------------------------------------------------------------------- listing

def _natural_key(text):
    """Sort 'character2' before 'character10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _skip(member):
    parts = member.split("/")
    return member.endswith("/") or "__MACOSX" in parts or any(p.startswith(".") for p in parts)


def _parse_drawer(stem, where):
    m = re.fullmatch(r"\d+_(\d+)", stem)
    if m is None:
        raise DataError(
            f"{where}: image file name '{stem}.png' does not look like XXXX_YY.png (YY = drawer); "
            f"this is not the official Omniglot layout."
        )
    return int(m.group(1)) - 1


class Listing:
    """What a zip or folder holds, without decoding any image.

    Attributes
    ----------
    set_name : str
        The top folder, e.g. ``"images_background"``.
    members : list of str
        One per image: the zip member name or the file path.
    alphabet_names, character_names : list of str
        Per image; ``character_names[k]`` is ``"Alphabet/characterNN"``.
    drawers : numpy.ndarray of int64, shape (n,)
        0-based drawer id (``YY - 1``).
    """

    def __init__(self, source, set_name, records):
        records.sort(key=lambda r: (_natural_key(r[0]), _natural_key(r[1]), r[2], r[3]))
        self.source = source
        self.set_name = set_name
        self.alphabet_names = [r[0] for r in records]
        self.character_names = [f"{r[0]}/{r[1]}" for r in records]
        self.drawers = np.array([r[2] for r in records], dtype=np.int64)
        self.members = [r[3] for r in records]

    @property
    def counts(self):
        """``(alphabets, characters, images)``."""
        return (len(set(self.alphabet_names)), len(set(self.character_names)), len(self.members))


def _record(parts, member, where):
    """``(alphabet, character, drawer, member)`` from ``[set, alphabet, character, file]``."""
    if len(parts) != 4:
        raise DataError(
            f"{where}: '{member}' is not in the official layout <set>/<Alphabet>/characterNN/XXXX_YY.png. "
            f"Pass the official zip, or the folder it extracts to."
        )
    return (parts[1], parts[2], _parse_drawer(parts[3][:-4], where), member)


def _list_zip(path):
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(
            f"load_omniglot: {path} is not a readable zip file ({err}); it is corrupt or a truncated "
            f"download. Delete it and download it again (`npsiamese data download`)."
        ) from None
    where = f"load_omniglot: {path}"
    pngs = [n for n in names if n.lower().endswith(".png") and not _skip(n)]
    if not pngs:
        raise DataError(f"{where}: holds no PNG images; is this an Omniglot zip?")
    records = [_record(n.split("/"), n, where) for n in pngs]
    sets = sorted({n.split("/")[0] for n in pngs})
    if len(sets) != 1:
        raise DataError(f"{where}: expected one top folder (e.g. images_background/), found {sets}.")
    return Listing(path, sets[0], records)


def _is_set_folder(folder):
    """A set folder holds alphabet folders that hold character folders."""
    return any(c.is_dir() for a in folder.iterdir() if a.is_dir() for c in a.iterdir())


def _list_folder(path):
    where = f"load_omniglot: {path}"
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(subdirs) == 1 and _is_set_folder(subdirs[0]):
        path = subdirs[0]  # the user passed the folder *above* images_background/
    records = []
    for png in path.glob("*/*/*"):
        if png.suffix.lower() == ".png" and not png.name.startswith("."):
            rel = png.relative_to(path.parent).as_posix()
            records.append(_record(rel.split("/"), str(png), where))
    if not records:
        raise DataError(
            f"{where}: found no images at <Alphabet>/characterNN/XXXX_YY.png inside it. Pass the folder "
            f"the official zip extracts to (e.g. images_background/)."
        )
    return Listing(path, path.name, records)


def scan_omniglot(path) -> Listing:
    """List the images of an Omniglot zip or folder (fast: decodes nothing)."""
    path = Path(path)
    return _list_folder(path) if path.is_dir() else _list_zip(path)


# --------------------------------------------------------------------------- decoding

def decode_png(data, label, where="load_omniglot"):
    """Decode one Omniglot PNG into a boolean ink mask of shape (105, 105).

    1-bit PNGs (the official files) decode directly: white = True in Pillow's
    mode ``"1"``, so ink is its negation. Other modes are converted to 8-bit
    grey and thresholded at 128.
    """
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{where}: {label} is not a readable PNG ({err}); re-download the set.") from None
    if im.size != (NATIVE_SIZE, NATIVE_SIZE):
        raise DataError(
            f"{where}: {label} is {im.size[0]}x{im.size[1]} pixels, expected "
            f"{NATIVE_SIZE}x{NATIVE_SIZE} like every official Omniglot image. Replace the file or "
            f"re-download the set."
        )
    if im.mode == "1":
        return ~np.asarray(im)
    return np.asarray(im.convert("L")) < 128


def _decode_all(listing):
    """All images of a listing as a boolean ink array of shape (n, 105, 105)."""
    ink = np.empty((len(listing.members), NATIVE_SIZE, NATIVE_SIZE), dtype=bool)
    if Path(listing.source).is_dir():
        for k, member in enumerate(listing.members):
            ink[k] = decode_png(Path(member).read_bytes(), member)
        return ink
    with zipfile.ZipFile(listing.source) as zf:
        for k, member in enumerate(listing.members):
            try:
                data = zf.read(member)
            except (zipfile.BadZipFile, OSError, EOFError) as err:  # CRC error, truncated entry
                raise DataError(
                    f"load_omniglot: {listing.source}: entry {member} is damaged ({err}); the zip is "
                    f"corrupt. Delete it and download it again."
                ) from None
            ink[k] = decode_png(data, f"{listing.source}: {member}")
    return ink


# --------------------------------------------------------------------------- resampling

def area_matrix(n_in, n_out):
    """Area (box) resampling weights ``R`` of shape (n_out, n_in), rows summing to 1.

    Output pixel ``o`` covers the input interval ``[o*s, (o+1)*s)`` with
    ``s = n_in / n_out``; ``R[o, i]`` is the length of its overlap with input
    pixel ``[i, i+1)``, divided by ``s``. For an integer ``s`` this is the
    plain ``s``-pixel block mean.
    """
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale   # (n_out, 1) footprint start
    i = np.arange(n_in)[None, :]              # (1, n_in) input pixel start
    overlap = np.clip(np.minimum(lo + scale, i + 1) - np.maximum(lo, i), 0.0, None)
    return overlap / scale


def downsample(images, size, chunk=2048):
    """Exact area-weighted resample of ``(n, H, H)`` images to ``(n, size, size)`` float32.

    Area resampling is separable, so each image becomes ``R @ X @ R.T`` with
    ``R = area_matrix(H, size)``: every output pixel is the mean of the input
    over its square footprint, partial pixels weighted by their covered area.
    (Pillow's ``BOX`` filter agrees for integer factors such as 105 -> 35,
    but for 105 -> 52 or 28 it weighs whole pixels by their centres.)
    """
    n, height = images.shape[0], images.shape[1]
    if not 1 <= size <= height:
        raise ValueError(f"downsample: size must be in 1..{height} (no upsampling), got {size}.")
    if size == height:
        return images.astype(np.float32)
    r = area_matrix(height, size).astype(np.float32)
    out = np.empty((n, size, size), dtype=np.float32)
    for start in range(0, n, chunk):  # chunks keep the float32 copy of the input small
        x = images[start:start + chunk].astype(np.float32)
        out[start:start + chunk] = r @ x @ r.T
    # float32 rounding of the weights can overshoot full ink by ~1e-7: keep ink in [0, 1]
    return np.clip(out, 0.0, 1.0, out=out)


# --------------------------------------------------------------------------- dataset

class Omniglot:
    """Omniglot images with their alphabet, character and drawer labels.

    Attributes
    ----------
    images : numpy.ndarray, shape (n, S, S), float32
        Ink = 1, background = 0 (fractions after downsampling). Read-only
        when it comes from the loader's cache; ``subset`` returns copies.
    alphabet, character, drawer : numpy.ndarray, shape (n,), int64
        ``alphabets[alphabet[k]]`` and ``characters[character[k]]`` name image
        ``k``; ``drawer[k]`` is the 0-based drawer id (file suffix YY - 1).
    alphabets : list of str
        Alphabet names, e.g. ``"Greek"``.
    characters : list of str
        Character names, ``"Greek/character03"``.
    character_alphabet : numpy.ndarray, shape (n_characters,), int64
        The alphabet index of each character.
    """

    def __init__(self, images, alphabet, character, drawer, alphabets, characters,
                 character_alphabet, name="", source=""):
        self.images = images
        self.alphabet = np.asarray(alphabet, dtype=np.int64)
        self.character = np.asarray(character, dtype=np.int64)
        self.drawer = np.asarray(drawer, dtype=np.int64)
        self.alphabets = list(alphabets)
        self.characters = list(characters)
        self.character_alphabet = np.asarray(character_alphabet, dtype=np.int64)
        self.name = name
        self.source = str(source)

    @classmethod
    def from_listing(cls, images, listing, name=""):
        """Build the index arrays from a :class:`Listing` (images in listing order)."""
        alphabets = sorted(set(listing.alphabet_names), key=_natural_key)
        characters = list(dict.fromkeys(listing.character_names))  # listing is sorted already
        a_id = {a: k for k, a in enumerate(alphabets)}
        c_id = {c: k for k, c in enumerate(characters)}
        return cls(images,
                   [a_id[a] for a in listing.alphabet_names],
                   [c_id[c] for c in listing.character_names],
                   listing.drawers, alphabets, characters,
                   [a_id[c.split("/")[0]] for c in characters],
                   name=name or listing.set_name, source=listing.source)

    def __len__(self):
        return self.images.shape[0]

    @property
    def image_size(self):
        """Side length ``S`` of the square images."""
        return self.images.shape[1]

    @property
    def n_alphabets(self):
        return len(self.alphabets)

    @property
    def n_characters(self):
        return len(self.characters)

    def subset(self, index, name=None):
        """A new :class:`Omniglot` with the images ``index`` (int array or boolean mask).

        Alphabets and characters are renumbered 0.. in their original order so
        that only the ones present remain; drawer ids keep their values.
        """
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        used_c = np.unique(self.character[index])
        used_a = np.unique(self.character_alphabet[used_c])
        new_c = np.full(self.n_characters, -1, dtype=np.int64)
        new_c[used_c] = np.arange(used_c.size)
        new_a = np.full(self.n_alphabets, -1, dtype=np.int64)
        new_a[used_a] = np.arange(used_a.size)
        return Omniglot(self.images[index], new_a[self.alphabet[index]], new_c[self.character[index]],
                        self.drawer[index], [self.alphabets[a] for a in used_a],
                        [self.characters[c] for c in used_c], new_a[self.character_alphabet[used_c]],
                        name=self.name if name is None else name, source=self.source)

    def __repr__(self):
        return (f"Omniglot({self.name!r}: {len(self)} images, {self.n_characters} characters, "
                f"{self.n_alphabets} alphabets, {self.image_size}x{self.image_size})")


# --------------------------------------------------------------------------- caching

_MEMORY = OrderedDict()   # key -> Omniglot, most recently used last
_MEMORY_ENTRIES = 3


def clear_memory_cache():
    """Forget the decoded sets kept in memory (the disk cache stays)."""
    _MEMORY.clear()


def _source_stamp(source):
    """What identifies the content: path, byte size and modification time (of every PNG for a folder)."""
    if source.is_dir():
        stats = [p.stat() for p in source.rglob("*.png")]
        size, mtime = sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
    else:
        stat = source.stat()
        size, mtime = stat.st_size, stat.st_mtime_ns
    return f"{source.resolve()}|{size}|{mtime}"


def _cache_file(stamp, source, size):
    digest = hashlib.sha256(f"{stamp}|{size}|v{CACHE_FORMAT}".encode()).hexdigest()[:16]
    return cache_dir() / "decoded" / f"{source.stem}-{size}px-{digest}.npz"


def _save(path, ds, ink=None):
    """Write ``ds`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    At 105 px the images are exactly binary and are stored as one bit per
    pixel (8x smaller than uint8); ``ink``, the boolean (n, 105, 105) array
    they came from, saves a conversion.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if ds.image_size == NATIVE_SIZE:
        pixels = {"ink_bits": np.packbits(ds.images != 0 if ink is None else ink)}
    else:
        pixels = {"images": ds.images}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **pixels, shape=np.array(ds.images.shape), alphabet=ds.alphabet,
                     character=ds.character, drawer=ds.drawer, alphabets=np.array(ds.alphabets),
                     characters=np.array(ds.characters), character_alphabet=ds.character_alphabet,
                     name=np.array(ds.name), source=np.array(ds.source))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path):
    """Read a cache file written by :func:`_save`; ``None`` if it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            shape = tuple(int(s) for s in z["shape"])
            if "ink_bits" in z:
                n = int(np.prod(shape))
                images = np.unpackbits(z["ink_bits"], count=n).reshape(shape).astype(np.float32)
            else:
                images = z["images"]
            return Omniglot(images, z["alphabet"], z["character"], z["drawer"], z["alphabets"].tolist(),
                            z["characters"].tolist(), z["character_alphabet"], name=str(z["name"]),
                            source=str(z["source"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _remember(key, ds):
    ds.images.flags.writeable = False  # shared between callers: nobody may edit it in place
    _MEMORY[key] = ds
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > _MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return ds


def _short_name(source):
    """``"small1"`` for ``.../images_background_small1.zip``, else the file or folder name."""
    return next((k for k, stem in SETS.items() if stem == source.stem), source.stem)


def load_omniglot(name_or_path, image_size=NATIVE_SIZE, data_dir=None, cache=True) -> Omniglot:
    """Load an Omniglot set as float32 images with ink = 1.

    Parameters
    ----------
    name_or_path : str or path
        ``"small1"``, ``"small2"``, ``"background"``, ``"evaluation"`` (looked
        up in ``data_dir``), or the path of an official zip / extracted folder.
    image_size : int
        Side ``S`` of the returned images, 1..105. Sizes below 105 are an
        area-weighted downsample (:func:`downsample`).
    data_dir : str or path, optional
        Where to look for a named set; default ``$NPSIAMESE_DATA``, else the
        cache directory.
    cache : bool
        Use the in-memory and on-disk caches (keyed by source path, its byte
        size and modification time, and ``image_size``).

    Returns
    -------
    Omniglot
        ``images`` of shape (n, S, S) float32 (read-only when cached) and the
        label arrays.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not 1 <= image_size <= NATIVE_SIZE:
        raise ValueError(f"load_omniglot: image_size must be an integer in 1..{NATIVE_SIZE} "
                         f"(105 native; e.g. 52, 35, 28), got {image_size!r}.")
    image_size = int(image_size)
    source = resolve_source(name_or_path, data_dir)
    name = _short_name(source)
    if not cache:
        listing = scan_omniglot(source)
        return Omniglot.from_listing(downsample(_decode_all(listing), image_size), listing, name)

    ds = _cached(source, _source_stamp(source), image_size, remember=True)
    ds.name = name
    return ds


def _cached(source, stamp, image_size, remember):
    """Memory cache, else disk cache, else decode (105 px) or downsample the 105 px set.

    Every result is written to the disk cache; ``remember`` also keeps it in
    memory (not done for the 105 px set that only serves to derive a smaller size).
    """
    key = (stamp, image_size)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    path = _cache_file(stamp, source, image_size)
    ds = _load(path) if path.exists() else None
    if ds is None:
        ink = None
        if image_size == NATIVE_SIZE:
            listing = scan_omniglot(source)
            ink = _decode_all(listing)
            ds = Omniglot.from_listing(ink.astype(np.float32), listing)
        else:
            native = _cached(source, stamp, NATIVE_SIZE, remember=False)
            ds = Omniglot(downsample(native.images, image_size), native.alphabet, native.character,
                          native.drawer, native.alphabets, native.characters, native.character_alphabet,
                          source=native.source)
        try:
            _save(path, ds, ink)
        except OSError:  # a read-only home directory must not stop anyone from loading data
            pass
    return _remember(key, ds) if remember else ds
