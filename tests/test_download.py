"""Downloader against a local HTTP server on 127.0.0.1: verification, atomic writes, clear errors."""
import hashlib
import socket

import pytest

from npsiamese import download as dl
from npsiamese.download import DownloadError, download, download_many, fetch, verify

from conftest import build_omniglot


@pytest.fixture(scope="module")
def synthetic_zip_bytes(tmp_path_factory):
    """A small synthetic set in the official layout: 2 alphabets, 3 characters, 4 drawers."""
    path = build_omniglot(tmp_path_factory.mktemp("dl"), alphabets={"A": 2, "B": 1}, n_drawers=4)
    return path.read_bytes()


@pytest.fixture
def fake_files(monkeypatch, synthetic_zip_bytes):
    """Point the registry's checksums / counts at the synthetic zip."""
    digest = hashlib.sha256(synthetic_zip_bytes).hexdigest()
    files = dict(dl.FILES)
    files["small1"] = dl.RemoteFile("images_background_small1.zip", sha256=digest)
    files["background"] = dl.RemoteFile("images_background.zip", counts=(2, 3, 12))
    files["runs"] = dl.RemoteFile("one-shot-classification/all_runs.zip", sha256=digest)
    monkeypatch.setattr(dl, "FILES", files)
    return files


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_sha256_and_writes_the_file(local_http_server, fake_files, synthetic_zip_bytes,
                                                      tmp_path):
    local_http_server.files["/images_background_small1.zip"] = (synthetic_zip_bytes, "ok")
    path = download("small1", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert path == tmp_path / "images_background_small1.zip"
    assert path.read_bytes() == synthetic_zip_bytes
    assert _leftovers(tmp_path) == ["images_background_small1.zip"]          # no temporary files


def test_full_set_is_verified_by_its_structure(local_http_server, fake_files, synthetic_zip_bytes, tmp_path):
    local_http_server.files["/images_background.zip"] = (synthetic_zip_bytes, "ok")
    path = download("background", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert path.exists()
    fake_files["background"] = dl.RemoteFile("images_background.zip", counts=(30, 964, 19280))
    with pytest.raises(DownloadError, match=r"holds 2 alphabets, 3 characters, 12 images; expected 30, 964"):
        download("background", dest_dir=tmp_path / "b", base_url=local_http_server.url, progress=False)
    assert _leftovers(tmp_path / "b") == []


def test_truncated_download_leaves_nothing(local_http_server, fake_files, synthetic_zip_bytes, tmp_path):
    local_http_server.files["/images_background_small1.zip"] = (synthetic_zip_bytes, "truncate")
    with pytest.raises(DownloadError, match="(cut off|broke off).*run the command again"):
        download("small1", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert _leftovers(tmp_path) == []


def test_corrupted_download_fails_the_checksum_and_leaves_nothing(local_http_server, fake_files,
                                                                  synthetic_zip_bytes, tmp_path):
    damaged = bytearray(synthetic_zip_bytes)
    damaged[len(damaged) // 2] ^= 0xFF
    local_http_server.files["/images_background_small1.zip"] = (bytes(damaged), "ok")
    with pytest.raises(DownloadError, match="SHA-256 .* expected .*corrupt"):
        download("small1", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert _leftovers(tmp_path) == []


def test_corrupted_full_set_fails_the_crc_check(local_http_server, fake_files, synthetic_zip_bytes, tmp_path):
    damaged = bytearray(synthetic_zip_bytes)
    damaged[len(damaged) // 3] ^= 0xFF                     # inside some PNG's compressed data
    local_http_server.files["/images_background.zip"] = (bytes(damaged), "ok")
    with pytest.raises(DownloadError, match="images_background.zip (is corrupt|is not a valid)"):
        download("background", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert _leftovers(tmp_path) == []


def test_http_404_is_reported(local_http_server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("small2", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert _leftovers(tmp_path) == []


def test_no_network_gives_a_clear_error(tmp_path):
    with socket.socket() as s:                   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="could not fetch .*No network"):
        download("small1", dest_dir=tmp_path, base_url=f"http://127.0.0.1:{port}", progress=False, timeout=5)
    assert _leftovers(tmp_path) == []


def test_existing_verified_file_is_not_downloaded_again(local_http_server, fake_files, synthetic_zip_bytes,
                                                        tmp_path):
    local_http_server.files["/images_background_small1.zip"] = (synthetic_zip_bytes, "ok")
    download("small1", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    download("small1", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert len(local_http_server.requests) == 1
    download("small1", dest_dir=tmp_path, base_url=local_http_server.url, progress=False, force=True)
    assert len(local_http_server.requests) == 2


def test_damaged_existing_file_is_replaced(local_http_server, fake_files, synthetic_zip_bytes, tmp_path):
    (tmp_path / "images_background_small1.zip").write_bytes(b"half a file")
    local_http_server.files["/images_background_small1.zip"] = (synthetic_zip_bytes, "ok")
    path = download("small1", dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert path.read_bytes() == synthetic_zip_bytes


def test_base_url_and_destination_from_the_environment(local_http_server, fake_files, synthetic_zip_bytes,
                                                       tmp_path, monkeypatch):
    local_http_server.files["/one-shot-classification/all_runs.zip"] = (synthetic_zip_bytes, "ok")
    monkeypatch.setenv(dl.BASE_URL_ENV, local_http_server.url + "/")
    monkeypatch.setenv("NPSIAMESE_DATA", str(tmp_path / "data"))
    path = download("runs", progress=False)
    assert path == tmp_path / "data" / "all_runs.zip"
    assert local_http_server.requests == ["/one-shot-classification/all_runs.zip"]


def test_download_all_fetches_every_file(local_http_server, fake_files, synthetic_zip_bytes, tmp_path,
                                         monkeypatch):
    for name, remote in fake_files.items():
        local_http_server.files["/" + remote.url_path] = (synthetic_zip_bytes, "ok")
    sha = hashlib.sha256(synthetic_zip_bytes).hexdigest()
    monkeypatch.setitem(fake_files, "small2", dl.RemoteFile("images_background_small2.zip", sha256=sha))
    monkeypatch.setitem(fake_files, "evaluation", dl.RemoteFile("images_evaluation.zip", counts=(2, 3, 12)))
    paths = download_many(["all"], dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
    assert sorted(p.name for p in paths) == sorted(_leftovers(tmp_path)) == sorted(
        ["images_background_small1.zip", "images_background_small2.zip", "images_background.zip",
         "images_evaluation.zip", "all_runs.zip"])


def test_fetch_is_atomic_on_failure(local_http_server, tmp_path):
    dest = tmp_path / "x.zip"
    dest.write_bytes(b"old content")
    local_http_server.files["/x.zip"] = (b"new content" * 1000, "truncate")
    with pytest.raises(DownloadError):
        fetch(local_http_server.url + "/x.zip", dest, progress=False)
    assert dest.read_bytes() == b"old content" and _leftovers(tmp_path) == ["x.zip"]


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown file 'small3'"):
        download("small3")


def test_registry_matches_the_official_checksums():
    assert dl.FILES["runs"].sha256 == "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"
    assert dl.FILES["evaluation"].counts == (20, 659, 13180)
    assert dl.FILES["background"].counts == (30, 964, 19280)
    assert dl.BASE_URL == "https://github.com/brendenlake/omniglot/raw/master/python"


@pytest.mark.data
def test_real_small_sets_verify_against_hard_coded_sha256(omniglot_dir):
    sums = omniglot_dir / "SHA256SUMS"
    if not sums.exists():
        pytest.skip("no SHA256SUMS in NPSIAMESE_DATA")
    official = {line.split()[1]: line.split()[0] for line in sums.read_text().splitlines() if line.strip()}
    for name in ("small1", "small2"):
        assert dl.FILES[name].sha256 == official[dl.FILES[name].filename]
        verify(name, omniglot_dir / dl.FILES[name].filename)


@pytest.mark.data
def test_real_zips_download_and_verify_from_a_local_mirror(omniglot_dir, local_http_server, tmp_path):
    for name in ("small1", "background"):
        source = omniglot_dir / dl.FILES[name].filename
        if not source.exists():
            pytest.skip(f"{source.name} is not in NPSIAMESE_DATA")
        local_http_server.files["/" + dl.FILES[name].url_path] = (source.read_bytes(), "ok")
        path = download(name, dest_dir=tmp_path, base_url=local_http_server.url, progress=False)
        assert path.stat().st_size == source.stat().st_size
