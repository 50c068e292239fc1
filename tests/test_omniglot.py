"""Loading Omniglot: layout, labels, downsampling, caches, data location, clear errors."""
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from npsiamese import omniglot
from npsiamese.omniglot import (DataError, DataNotFoundError, area_matrix, downsample, load_omniglot,
                                scan_omniglot)

from conftest import SYNTHETIC_ALPHABETS, build_omniglot

N_CHARS = sum(SYNTHETIC_ALPHABETS.values())


# --------------------------------------------------------------------------- reading

def test_synthetic_zip_loads_with_labels(omniglot_synthetic_zip, omniglot_cache):
    ds = load_omniglot(omniglot_synthetic_zip)
    assert ds.images.shape == (N_CHARS * 20, 105, 105) and ds.images.dtype == np.float32
    assert set(np.unique(ds.images)) == {0.0, 1.0}
    assert 0.01 < ds.images.mean() < 0.3                      # ink is the minority (ink = 1, not inverted)
    assert ds.alphabets == ["Alpha", "Beta_(test)", "Gamma"]
    assert ds.n_characters == N_CHARS and ds.characters[0] == "Alpha/character01"
    assert sorted(np.unique(ds.drawer)) == list(range(20))
    # labels agree with each other: image -> character -> alphabet
    assert np.array_equal(ds.character_alphabet[ds.character], ds.alphabet)
    for k in (0, 137, len(ds) - 1):
        assert ds.characters[ds.character[k]].split("/")[0] == ds.alphabets[ds.alphabet[k]]
    assert np.bincount(ds.character).tolist() == [20] * N_CHARS
    assert ds.name == "background" and "15 characters" in repr(ds)


def test_zip_and_folder_give_the_same_arrays(omniglot_synthetic_zip, omniglot_synthetic_folder,
                                             omniglot_cache):
    a = load_omniglot(omniglot_synthetic_zip)
    b = load_omniglot(omniglot_synthetic_folder)
    c = load_omniglot(omniglot_synthetic_folder.parent)       # the folder above images_background/
    for other in (b, c):
        assert np.array_equal(a.images, other.images)
        assert np.array_equal(a.character, other.character) and np.array_equal(a.drawer, other.drawer)
        assert a.characters == other.characters


def test_image_pixels_match_the_png(omniglot_synthetic_zip, omniglot_cache):
    ds = load_omniglot(omniglot_synthetic_zip)
    listing = scan_omniglot(omniglot_synthetic_zip)
    with zipfile.ZipFile(omniglot_synthetic_zip) as zf:
        png = Image.open(io.BytesIO(zf.read(listing.members[42])))
        expected = (np.asarray(png.convert("L")) < 128).astype(np.float32)
    assert np.array_equal(ds.images[42], expected)
    assert listing.members[42].endswith(f"_{ds.drawer[42] + 1:02d}.png")


def test_subset_renumbers_characters_and_keeps_drawers(omniglot_synthetic_zip, omniglot_cache):
    ds = load_omniglot(omniglot_synthetic_zip)
    sub = ds.subset(ds.alphabet == 2)
    assert sub.alphabets == ["Gamma"] and sub.n_characters == 4
    assert sub.character.max() == 3 and sub.character_alphabet.tolist() == [0, 0, 0, 0]
    assert np.array_equal(sub.drawer, ds.drawer[ds.alphabet == 2])
    assert sub.images.flags.writeable                          # a copy, unlike the cached array


# --------------------------------------------------------------------------- downsampling

def test_area_matrix_rows_sum_to_one_and_cover_every_input_pixel():
    for n_out in (52, 35, 28, 20):
        r = area_matrix(105, n_out)
        assert np.allclose(r.sum(1), 1.0)
        assert np.allclose(r.sum(0), n_out / 105)                # every input pixel counted exactly once


def test_integer_factor_is_the_block_mean():
    x = (np.random.default_rng(0).random((4, 105, 105)) < 0.3)
    expected = x.reshape(4, 35, 3, 35, 3).mean(axis=(2, 4))
    assert np.allclose(downsample(x, 35), expected, atol=1e-6)


def _supersampled_area_mean(x, size):
    """Exact area average, independently: split every pixel into size x size sub-pixels,
    then average blocks of H x H sub-pixels (output pixel o covers sub-pixels o*H .. o*H+H-1)."""
    height = x.shape[-1]
    fine = np.repeat(np.repeat(x.astype(np.float64), size, axis=-2), size, axis=-1)
    return fine.reshape(size, height, size, height).mean(axis=(1, 3))


@pytest.mark.parametrize("height, size", [(105, 28), (21, 8), (21, 13), (10, 7)])
def test_non_integer_factor_is_the_exact_area_average(height, size):
    x = (np.random.default_rng(1).random((2, height, height)) < 0.3).astype(np.float32)
    ours = downsample(x, size)
    for k in range(2):
        assert np.allclose(ours[k], _supersampled_area_mean(x[k], size), atol=1e-6)
    assert ours.min() >= 0.0 and ours.max() <= 1.0


def test_pillow_box_is_not_area_weighted_for_non_integer_factors():
    """Why we do not use Pillow's BOX filter: it counts whole pixels by their centres."""
    x = (np.random.default_rng(2).random((105, 105)) < 0.3).astype(np.float32)
    pil = np.asarray(Image.fromarray(x, mode="F").resize((52, 52), Image.Resampling.BOX))
    assert not np.allclose(pil, _supersampled_area_mean(x, 52), atol=1e-3)
    assert np.allclose(downsample(x[None], 52)[0], _supersampled_area_mean(x, 52), atol=1e-6)


def test_load_at_reduced_size(omniglot_synthetic_zip, omniglot_cache):
    full = load_omniglot(omniglot_synthetic_zip)
    small = load_omniglot(omniglot_synthetic_zip, image_size=35)
    assert small.images.shape == (len(full), 35, 35)
    assert np.allclose(small.images, downsample(full.images, 35))
    # ink mass is preserved by an area filter (up to the pixel-area factor 9)
    assert np.allclose(small.images.sum((1, 2)) * 9, full.images.sum((1, 2)), rtol=1e-4)


@pytest.mark.parametrize("bad", [0, 106, 35.0, "35", True])
def test_image_size_is_validated(bad, omniglot_synthetic_zip):
    with pytest.raises(ValueError, match="load_omniglot: image_size"):
        load_omniglot(omniglot_synthetic_zip, image_size=bad)


# --------------------------------------------------------------------------- caches

def test_memory_then_disk_cache(omniglot_synthetic_zip, omniglot_cache):
    first = load_omniglot(omniglot_synthetic_zip, image_size=28)
    assert load_omniglot(omniglot_synthetic_zip, image_size=28) is first          # in memory
    assert not first.images.flags.writeable                                        # shared: read-only
    assert len(omniglot._MEMORY) == 1               # the 105 px set it came from is not kept in memory
    files = sorted(p.name for p in (omniglot_cache / "decoded").iterdir())
    assert len(files) == 2 and any("-28px-" in f for f in files) and any("-105px-" in f for f in files)
    assert not any(f.endswith(".tmp") for f in files)                               # atomic writes
    omniglot.clear_memory_cache()
    again = load_omniglot(omniglot_synthetic_zip, image_size=28)                    # from disk
    assert again is not first and np.array_equal(again.images, first.images)
    assert again.characters == first.characters and np.array_equal(again.drawer, first.drawer)


def test_disk_cache_is_used_instead_of_decoding(omniglot_synthetic_zip, omniglot_cache, monkeypatch):
    load_omniglot(omniglot_synthetic_zip)
    omniglot.clear_memory_cache()

    def no_decoding(listing):
        raise AssertionError("decoded PNGs although a cache file exists")
    monkeypatch.setattr(omniglot, "_decode_all", no_decoding)
    assert len(load_omniglot(omniglot_synthetic_zip)) == N_CHARS * 20


def test_cache_key_follows_the_source_file(tmp_path, omniglot_cache):
    path = build_omniglot(tmp_path / "a", alphabets={"One": 2}, n_drawers=3)
    first = load_omniglot(path)
    build_omniglot(tmp_path / "a", alphabets={"One": 3}, n_drawers=3, seed=5)    # same path, new content
    os.utime(path, ns=(1, 1))                                                     # and a different mtime
    second = load_omniglot(path)
    assert len(first) == 6 and len(second) == 9
    assert len(list((omniglot_cache / "decoded").iterdir())) == 2


def test_without_cache_writes_nothing(omniglot_synthetic_zip, omniglot_cache):
    ds = load_omniglot(omniglot_synthetic_zip, image_size=35, cache=False)
    assert ds.images.shape[1:] == (35, 35) and not omniglot_cache.exists()


def test_cache_dir_follows_xdg_and_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert omniglot.cache_dir() == tmp_path / "xdg" / "npsiamese"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert omniglot.cache_dir() == tmp_path / "home" / ".cache" / "npsiamese"


# --------------------------------------------------------------------------- where the data comes from

def test_data_location_rule(tmp_path, monkeypatch, omniglot_cache):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    build_omniglot(explicit, "images_background_small1", alphabets={"E": 2}, n_drawers=2)
    build_omniglot(env, "images_background_small1", alphabets={"N": 3}, n_drawers=2)
    build_omniglot(omniglot_cache, "images_background_small1", alphabets={"C": 4}, n_drawers=2)
    monkeypatch.delenv("NPSIAMESE_DATA", raising=False)
    assert load_omniglot("small1").alphabets == ["C"]                    # cache dir
    monkeypatch.setenv("NPSIAMESE_DATA", str(env))
    assert load_omniglot("small1").alphabets == ["N"]                    # env beats cache dir
    assert load_omniglot("small1", data_dir=explicit).alphabets == ["E"]  # explicit beats env
    assert load_omniglot("small1").name == "small1"


def test_extracted_folder_is_found_by_name(tmp_path, omniglot_cache):
    build_omniglot(tmp_path, "images_background_small2", alphabets={"F": 2}, n_drawers=2, as_zip=False)
    assert load_omniglot("small2", data_dir=tmp_path).alphabets == ["F"]


# --------------------------------------------------------------------------- clear errors

def test_missing_set_says_where_and_how_to_download(tmp_path, omniglot_cache):
    with pytest.raises(DataNotFoundError) as err:
        load_omniglot("small1", data_dir=tmp_path)
    message = str(err.value)
    assert "images_background_small1.zip" in message and str(tmp_path) in message
    assert "npsiamese data download small1" in message


def test_missing_path(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such file or folder"):
        load_omniglot(tmp_path / "nope.zip")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_zip_is_named(tmp_path, omniglot_synthetic_zip, omniglot_cache, damage):
    bad = tmp_path / "images_background.zip"
    data = omniglot_synthetic_zip.read_bytes()
    bad.write_bytes(b"not a zip at all" * 100 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt") as err:
        load_omniglot(bad)
    assert str(bad) in str(err.value)


def test_damaged_entry_is_named(tmp_path, omniglot_cache):
    path = tmp_path / "images_background.zip"
    png = io.BytesIO()
    Image.new("1", (105, 105), 1).save(png, format="PNG")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images_background/A/character01/0001_01.png", png.getvalue())
        zf.writestr("images_background/A/character01/0001_02.png", b"\x89PNG broken")
    with pytest.raises(DataError, match="0001_02.png is not a readable PNG"):
        load_omniglot(path)


def test_wrong_layout_is_named(tmp_path, omniglot_cache):
    path = tmp_path / "flat.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/0001_01.png", b"")
    with pytest.raises(DataError, match=r"'images/0001_01.png' is not in the official layout"):
        load_omniglot(path)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.txt", b"hello")
    with pytest.raises(DataError, match="no PNG images"):
        load_omniglot(tmp_path / "empty.zip")


def test_png_of_the_wrong_size_is_named(tmp_path, omniglot_cache):
    path = tmp_path / "images_background.zip"
    png = io.BytesIO()
    Image.new("1", (64, 64), 1).save(png, format="PNG")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images_background/A/character01/0001_01.png", png.getvalue())
    with pytest.raises(DataError, match=r"character01/0001_01.png is 64x64 pixels, expected 105x105"):
        load_omniglot(path)


def test_bad_file_name_is_named(tmp_path, omniglot_cache):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images_background/A/character01/picture.png", b"")
    with pytest.raises(DataError, match="does not look like XXXX_YY.png"):
        load_omniglot(path)


# --------------------------------------------------------------------------- the real data

REAL_COUNTS = {"background": (30, 964, 19280), "small1": (5, 136, 2720), "small2": (5, 156, 3120)}


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_real_set_counts(name, omniglot_dir):
    path = omniglot_dir / f"{omniglot.SETS[name]}.zip"
    if not path.exists():
        pytest.skip(f"{path.name} is not in NPSIAMESE_DATA={omniglot_dir}")
    assert scan_omniglot(path).counts == REAL_COUNTS[name]


@pytest.mark.data
def test_real_small_set_cache_round_trip(omniglot_dir, omniglot_cache):
    if not (omniglot_dir / "images_background_small2.zip").exists():
        pytest.skip("images_background_small2.zip is not in NPSIAMESE_DATA")
    ds = load_omniglot("small2", image_size=35, data_dir=omniglot_dir)
    assert (ds.n_alphabets, ds.n_characters, len(ds)) == REAL_COUNTS["small2"]
    assert ds.images.shape == (3120, 35, 35) and 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert np.bincount(ds.drawer).tolist() == [156] * 20
    omniglot.clear_memory_cache()
    again = load_omniglot("small2", image_size=35, data_dir=omniglot_dir)
    assert np.array_equal(again.images, ds.images) and again.characters == ds.characters
    native = load_omniglot("small2", data_dir=omniglot_dir)
    assert set(np.unique(native.images)) == {0.0, 1.0} and 0.02 < native.images.mean() < 0.15
