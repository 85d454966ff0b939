"""Dataset registry and download: resolution order, a real HTTP download from 127.0.0.1, checksums.

The archives served here are built from REAL files of the local datasets, laid out the way GitHub
lays out a repository archive, and checked against entries of the PACKAGED manifests.
"""

from __future__ import annotations

import dataclasses
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rbcray.data import download, registry
from rbcray.data.download import (
    ManifestEntry,
    download_dataset,
    fetch_dataset,
    load_manifest,
    make_manifest,
    parse_manifest,
    verify_local,
)
from rbcray.data.registry import dataset_info, resolve_dataset
from rbcray.data.sources import load_bccd, open_source
from rbcray.errors import DataError


# ----------------------------------------------------------------------------- helpers
class _Server:
    """A real HTTP server on 127.0.0.1 serving ``files`` (URL path -> bytes); anything else is 404."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache in tmp_path; no RBCRAY_DATA_DIR, no ../shared/data, network allowed. Returns the cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RBCRAY_CACHE_DIR", str(cache))
    monkeypatch.delenv("RBCRAY_DATA_DIR", raising=False)
    monkeypatch.delenv("RBCRAY_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "shared_dirs", lambda: [tmp_path / "no-shared"])
    return cache


def _subset(name: str, root: Path, wanted: list[str]) -> list[ManifestEntry]:
    """Entries of the packaged manifest for ``wanted`` local paths (they must be listed there)."""
    by_path = {e.path: e for e in load_manifest(name)}
    assert all((root / w).is_file() for w in wanted)
    return [by_path[w] for w in wanted]


def _zip(root: Path, entries: list[ManifestEntry], top: str, tamper: str | None = None, drop: str | None = None) -> bytes:
    """A GitHub-style archive (everything under ``top/``) of the real files named by ``entries``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{top}/README.md", b"not part of the dataset\n")
        for e in entries:
            if e.path == drop:
                continue
            data = (root / e.path).read_bytes()
            if e.path == tamper:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            zf.writestr(f"{top}/{e.archive_path}", data)
    return buf.getvalue()


CHULA_FILES = ["LICENSE", "Dataset/1.jpg", "Dataset/2.jpg", "Label/1.txt", "Label/2.txt"]


def _bccd_files(root: Path) -> list[str]:
    out = ["LICENSE", "classes.txt"]
    for split in ("train", "val", "test"):
        img = sorted((root / "images" / split).glob("*.jpg"))[0]
        out += [f"images/{split}/{img.name}", f"labels/{split}/{img.stem}.txt"]
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- manifests
def test_packaged_manifests_match_local_copies(chula_root: Path, bccd_root: Path) -> None:
    for name, root in (("chula-rbc-12", chula_root), ("bccd-txl-pbc", bccd_root)):
        entries = load_manifest(name)
        assert len(entries) == dataset_info(name).n_files
        assert verify_local(root, name) == []
    bccd = {e.path: e.archive_path for e in load_manifest("bccd-txl-pbc")}
    assert bccd["classes.txt"] == "TXL_PBC/labels/classes.txt"
    assert all(a.startswith("TXL_PBC/") for p, a in bccd.items() if p != "LICENSE")


def test_make_manifest_roundtrip_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "bccd-txl-pbc"
    (d / "images" / "train").mkdir(parents=True)
    (d / "images" / "train" / "a.jpg").write_bytes(b"jpg")
    (d / "classes.txt").write_text("WBC\n")
    (d / ".DS_Store").write_bytes(b"junk")
    text = make_manifest(d)
    entries = parse_manifest(text)
    assert [(e.path, e.archive_path) for e in entries] == [
        ("classes.txt", "TXL_PBC/labels/classes.txt"),
        ("images/train/a.jpg", "TXL_PBC/images/train/a.jpg"),
    ]
    assert download.main(["--make-manifest", str(d)]) == 0
    assert capsys.readouterr().out == text
    (d / "classes.txt").write_text("RBC\n")
    problems = verify_local(d, "bccd-txl-pbc", manifest=_write(tmp_path / "m.txt", text))
    assert len(problems) == 1 and "classes.txt" in problems[0] and "expected" in problems[0]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_verify_local_names_missing_and_changed_files(tmp_path: Path, chula_root: Path) -> None:
    entries = _subset("chula-rbc-12", chula_root, CHULA_FILES)
    copy = tmp_path / "copy"
    for e in entries:
        (copy / e.path).parent.mkdir(parents=True, exist_ok=True)
        (copy / e.path).write_bytes((chula_root / e.path).read_bytes())
    m = _write(tmp_path / "m.txt", "".join(f"{e.sha256}  {e.path}  {e.archive_path}\n" for e in entries))
    assert verify_local(copy, "chula-rbc-12", manifest=m) == []
    (copy / "Label/1.txt").write_text("1 2 3\n")
    (copy / "Dataset/2.jpg").unlink()
    problems = verify_local(copy, "chula-rbc-12", manifest=m)
    assert len(problems) == 2
    assert any("Label/1.txt" in p and "expected" in p for p in problems)
    assert any("Dataset/2.jpg" in p and "missing" in p for p in problems)


def test_malformed_manifest_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"m\.txt: line 2"):
        parse_manifest("# c\nnot-a-sha  a  b\n", "m.txt")
    with pytest.raises(DataError, match="line 1"):
        parse_manifest(f"{'0' * 64}  ../evil  x\n", "m.txt")


# ----------------------------------------------------------------------------- download
def test_download_verify_and_resolve_from_cache(
    server: _Server, isolated: Path, chula_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    entries = _subset("chula-rbc-12", chula_root, CHULA_FILES)
    server.files["/Chula-RBC-12-Dataset/archive/refs/heads/main.zip"] = _zip(
        chula_root, entries, "Chula-RBC-12-Dataset-main"
    )
    info = dataclasses.replace(
        dataset_info("chula-rbc-12"),
        urls=(f"{server.base}/Chula-RBC-12-Dataset/archive/refs/heads/main.zip",),
        n_files=len(entries),
    )
    manifests = isolated.parent / "manifests"
    manifests.mkdir()
    _write(manifests / "chula-rbc-12.txt", "".join(f"{e.sha256}  {e.path}  {e.archive_path}\n" for e in entries))
    monkeypatch.setitem(registry.DATASETS, "chula-rbc-12", info)
    monkeypatch.setattr(download, "MANIFEST_DIR", manifests)

    root = resolve_dataset("chula-rbc-12")  # nothing local: downloads through the registry
    assert root == isolated / "chula-rbc-12"
    assert server.requests == ["/Chula-RBC-12-Dataset/archive/refs/heads/main.zip"]
    for e in entries:
        assert (root / e.path).read_bytes() == (chula_root / e.path).read_bytes()
    assert not (root / "README.md").exists()  # only the manifest's files are taken
    assert _leftovers(isolated) == ["chula-rbc-12"]  # no temp archive, no staging folder
    assert "downloaded chula-rbc-12" in capsys.readouterr().err
    src = open_source("chula-rbc-12")  # the stage reading it finds the cached copy
    assert [s.stem for s in src.images] == ["1", "2"] and src.images[0].points is not None
    assert resolve_dataset("chula-rbc-12") == root and len(server.requests) == 1  # no second download
    assert fetch_dataset("chula-rbc-12", verify=True) == root


def test_bccd_archive_layout_and_next_url_after_404(server: _Server, isolated: Path, bccd_root: Path) -> None:
    wanted = _bccd_files(bccd_root)
    entries = _subset("bccd-txl-pbc", bccd_root, wanted)
    # No 'main' branch here: the downloader must move on to the next address.
    server.files["/TXL-PBC_Dataset/archive/refs/heads/master.zip"] = _zip(bccd_root, entries, "TXL-PBC_Dataset-master")
    info = dataclasses.replace(
        dataset_info("bccd-txl-pbc"),
        urls=tuple(f"{server.base}/TXL-PBC_Dataset/archive/refs/heads/{b}.zip" for b in ("main", "master")),
    )
    dest = isolated / "bccd-txl-pbc"
    assert download_dataset(info, dest, manifest=entries, progress=False) == dest
    assert [r.rsplit("/", 1)[1] for r in server.requests] == ["main.zip", "master.zip"]
    assert (dest / "classes.txt").read_text() == "WBC\nRBC\nPlatelet\n"
    imgs = load_bccd(dest)  # the BCCD loader reads the downloaded layout
    assert [s.split for s in imgs] == ["train", "val", "test"] and all(len(s.boxes_yolo) for s in imgs)


def test_checksum_mismatch_leaves_nothing(server: _Server, isolated: Path, chula_root: Path) -> None:
    entries = _subset("chula-rbc-12", chula_root, CHULA_FILES)
    server.files["/a.zip"] = _zip(chula_root, entries, "Chula-RBC-12-Dataset-main", tamper="Dataset/2.jpg")
    dest = isolated / "chula-rbc-12"
    with pytest.raises(DataError) as ei:
        download_dataset(dataset_info("chula-rbc-12"), dest, url=f"{server.base}/a.zip", manifest=entries, progress=False)
    msg = str(ei.value)
    sha = next(e.sha256 for e in entries if e.path == "Dataset/2.jpg")
    assert "Dataset/2.jpg" in msg and f"expected sha256 {sha}" in msg and "got " in msg and "\n" not in msg
    assert not dest.exists() and _leftovers(isolated) == []


def test_file_missing_from_archive_is_named(server: _Server, isolated: Path, chula_root: Path) -> None:
    entries = _subset("chula-rbc-12", chula_root, CHULA_FILES)
    server.files["/a.zip"] = _zip(chula_root, entries, "Chula-RBC-12-Dataset-main", drop="Label/2.txt")
    dest = isolated / "chula-rbc-12"
    with pytest.raises(DataError, match=r"Label/2\.txt is missing from the archive"):
        download_dataset(dataset_info("chula-rbc-12"), dest, url=f"{server.base}/a.zip", manifest=entries, progress=False)
    assert not dest.exists() and _leftovers(isolated) == []


def test_not_a_zip_is_a_clear_error(server: _Server, isolated: Path) -> None:
    server.files["/a.zip"] = b"<html>rate limited</html>"
    with pytest.raises(DataError, match="not a readable zip archive"):
        download_dataset(dataset_info("chula-rbc-12"), isolated / "chula-rbc-12", url=f"{server.base}/a.zip", progress=False)
    assert _leftovers(isolated) == []


def _check_offline_message(msg: str, isolated: Path, url: str) -> None:
    assert url in msg and str(isolated / "chula-rbc-12.zip") in msg
    assert "RBCRAY_DATA_DIR" in msg and "--data-dir" in msg and "\n" not in msg


def test_http_404_gives_the_offline_message(server: _Server, isolated: Path) -> None:
    info = dataset_info("chula-rbc-12")
    with pytest.raises(DataError) as ei:
        download_dataset(info, isolated / "chula-rbc-12", url=f"{server.base}/missing.zip", progress=False)
    assert "HTTP 404" in str(ei.value)
    _check_offline_message(str(ei.value), isolated, info.url)
    assert _leftovers(isolated) == []


def test_unreachable_server_gives_the_offline_message(isolated: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = dataclasses.replace(dataset_info("chula-rbc-12"), urls=(f"http://127.0.0.1:{port}/x.zip",))
    with pytest.raises(DataError) as ei:
        download_dataset(info, isolated / "chula-rbc-12", progress=False, timeout=5)
    _check_offline_message(str(ei.value), isolated, info.url)
    assert "refused" in str(ei.value).lower()
    assert _leftovers(isolated) == []


def test_offline_switch_and_a_manually_saved_archive(
    server: _Server, isolated: Path, chula_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = _subset("chula-rbc-12", chula_root, CHULA_FILES)
    info = dataclasses.replace(dataset_info("chula-rbc-12"), urls=(f"{server.base}/a.zip",))
    server.files["/a.zip"] = _zip(chula_root, entries, "Chula-RBC-12-Dataset-main")
    monkeypatch.setenv("RBCRAY_OFFLINE", "1")
    dest = isolated / "chula-rbc-12"
    with pytest.raises(DataError, match="RBCRAY_OFFLINE") as ei:
        download_dataset(info, dest, manifest=entries, progress=False)
    _check_offline_message(str(ei.value), isolated, info.url)
    assert server.requests == [] and not dest.exists()
    # Doing what the message says: save the archive there; it is unpacked and checked, and kept.
    isolated.mkdir(parents=True, exist_ok=True)
    (isolated / "chula-rbc-12.zip").write_bytes(server.files["/a.zip"])
    assert download_dataset(info, dest, manifest=entries, progress=False) == dest
    assert (dest / "Label/1.txt").read_bytes() == (chula_root / "Label/1.txt").read_bytes()
    assert server.requests == [] and (isolated / "chula-rbc-12.zip").is_file()


def test_existing_foreign_destination_is_not_overwritten(isolated: Path) -> None:
    dest = isolated / "chula-rbc-12"
    dest.mkdir(parents=True)
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="exists but does not hold"):
        download_dataset(dataset_info("chula-rbc-12"), dest, url="http://127.0.0.1:9/x.zip", progress=False)
    assert (dest / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- resolution
def _fake_copy(folder: Path, name: str) -> Path:
    for m in dataset_info(name).markers:
        (folder / m).mkdir(parents=True, exist_ok=True)
    return folder


def test_resolution_order(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "bccd-txl-pbc"
    explicit = _fake_copy(tmp_path / "explicit" / name, name)
    env = _fake_copy(tmp_path / "env" / name, name)
    shared = _fake_copy(tmp_path / "shared" / name, name)
    cached = _fake_copy(isolated / name, name)
    monkeypatch.setenv("RBCRAY_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setattr(registry, "shared_dirs", lambda: [tmp_path / "shared"])
    assert resolve_dataset(name, tmp_path / "explicit") == explicit  # a folder containing the dataset
    assert resolve_dataset(name, explicit) == explicit  # or the dataset itself
    assert resolve_dataset(name) == env
    monkeypatch.delenv("RBCRAY_DATA_DIR")
    assert resolve_dataset(name) == shared
    monkeypatch.setattr(registry, "shared_dirs", lambda: [tmp_path / "nowhere"])
    assert resolve_dataset(name, download=False) == cached
    assert registry.candidate_dirs(name)[-1] == cached


def test_explicit_data_dir_without_the_dataset_is_an_error(tmp_path: Path, isolated: Path) -> None:
    _fake_copy(isolated / "chula-rbc-12", "chula-rbc-12")  # present in the cache, but not looked at
    with pytest.raises(DataError, match=r"does not hold dataset 'chula-rbc-12'") as ei:
        resolve_dataset("chula-rbc-12", tmp_path)
    assert str(tmp_path) in str(ei.value)


def test_nothing_local_and_no_download(isolated: Path) -> None:
    with pytest.raises(DataError, match="downloads are off") as ei:
        resolve_dataset("chula-rbc-12", download=False)
    _check_offline_message(str(ei.value), isolated, dataset_info("chula-rbc-12").url)


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'; known datasets: bccd-txl-pbc, chula-rbc-12"):
        resolve_dataset("mnist")
    with pytest.raises(DataError, match="known datasets"):
        fetch_dataset("mnist")
