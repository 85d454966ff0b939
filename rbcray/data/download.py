"""Download a public dataset into the cache and check every file's SHA-256 (the data of paper Sec. 3).

Each registered dataset (:mod:`rbcray.data.registry`) ships a checksum manifest,
``rbcray/data/checksums/<name>.txt``, one line per file of a complete local copy::

    <sha256>  <path in the local copy>  <path inside the archive, below its single top folder>

:func:`download_dataset` streams the GitHub archive of the dataset's repository to a temporary file
in the cache, extracts only the manifest's files into a staging folder beside the destination,
verifies each checksum and renames the staging folder into place, so a destination either holds a
complete, verified copy or does not exist. Without network (or with ``RBCRAY_OFFLINE=1``) the error
says which archive to download and where to save it; an archive saved there is unpacked and checked
on the next run. ``python -m rbcray.data.download --make-manifest DIR`` regenerates a manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rbcray.data.registry import (
    DATASETS,
    DatasetInfo,
    dataset_info,
    holds,
    offline_message,
    resolve_dataset,
)
from rbcray.errors import DataError
from rbcray.io import atomic_write_bytes, sha256_file

MANIFEST_DIR = Path(__file__).resolve().parent / "checksums"
DEFAULT_TIMEOUT = 60.0  # seconds without a byte from the server before giving up
_CHUNK = 1 << 20
_SHA = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a dataset: its checksum, local path and path inside the source archive."""

    sha256: str
    path: str
    archive_path: str


# ----------------------------------------------------------------------------- manifests
def _safe_rel(p: str) -> bool:
    parts = p.split("/")
    return bool(p) and not p.startswith("/") and "\\" not in p and all(s not in ("", ".", "..") for s in parts)


def parse_manifest(text: str, source: str = "<manifest>") -> list[ManifestEntry]:
    """Parse manifest text (see the module docstring); malformed lines raise :class:`DataError`."""
    out: list[ManifestEntry] = []
    seen: set[str] = set()
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = line.split()
        if len(f) != 3 or not _SHA.fullmatch(f[0]) or not _safe_rel(f[1]) or not _safe_rel(f[2]):
            raise DataError(f"{source}: line {i}: expected '<sha256>  <relative path>  <archive path>'")
        if f[1] in seen:
            raise DataError(f"{source}: line {i}: {f[1]} is listed twice")
        seen.add(f[1])
        out.append(ManifestEntry(f[0], f[1], f[2]))
    if not out:
        raise DataError(f"{source}: manifest lists no files")
    return out


def manifest_path(name: str) -> Path:
    """The packaged checksum manifest of dataset ``name``."""
    return MANIFEST_DIR / f"{dataset_info(name).name}.txt"


def load_manifest(source: str | Path) -> list[ManifestEntry]:
    """Entries of a dataset's packaged manifest (``source`` a dataset name) or of a manifest file."""
    info = DATASETS.get(str(source))
    path = manifest_path(info.name) if info else Path(source)
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read checksum manifest ({e.strerror or e})") from None
    entries = parse_manifest(text, str(path))
    if info is not None and len(entries) != info.n_files:
        raise DataError(f"{path}: lists {len(entries)} files, dataset {info.name!r} has {info.n_files}")
    return entries


def _path_key(rel: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", rel))


def make_manifest(folder: str | Path, name: str | None = None) -> str:
    """Manifest text for every file of a local copy (hidden files skipped).

    ``name`` (default: the folder's name, when it is a registered dataset) selects how local paths
    map to archive paths; for unknown names the archive path equals the local path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    info = DATASETS.get(name or folder.name)
    if name is not None and info is None:
        dataset_info(name)  # raises, listing the known names
    rels = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not any(s.startswith(".") for s in rel.split("/")):
            if any(c.isspace() for c in rel):
                raise DataError(f"{p}: file names with spaces cannot go in a manifest")
            rels.append(rel)
    if not rels:
        raise DataError(f"{folder}: no files to list")
    label = info.name if info else folder.name
    lines = [
        f"# rbcray checksum manifest for {label}: {len(rels)} files "
        "(regenerate: python -m rbcray.data.download --make-manifest DIR)",
        "# sha256  path-in-local-copy  path-inside-archive (below its single top folder)",
    ]
    for rel in sorted(rels, key=_path_key):
        arch = info.archive_path_of(rel) if info else rel
        lines.append(f"{sha256_file(folder / rel)}  {rel}  {arch}")
    return "\n".join(lines) + "\n"


def verify_local(folder: str | Path, name: str, manifest: str | Path | None = None) -> list[str]:
    """Problems of a local copy against the checksums: one line per missing or changed file."""
    folder = Path(folder)
    problems = []
    for e in load_manifest(manifest if manifest is not None else dataset_info(name).name):
        p = folder / e.path
        if not p.is_file():
            problems.append(f"{p}: missing")
            continue
        got = sha256_file(p)
        if got != e.sha256:
            problems.append(f"{p}: sha256 {got}, expected {e.sha256}")
    return problems


# ----------------------------------------------------------------------------- download
class _Progress:
    """Bytes received, on stderr: a live line on a terminal, a start and an end line otherwise."""

    def __init__(self, name: str, url: str, total: int | None, enabled: bool) -> None:
        self.name, self.total, self.enabled = name, total, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.done, self.last = 0, 0.0
        if enabled and not self.tty:
            print(f"rbcray: downloading {name} from {url}", file=sys.stderr, flush=True)

    def _line(self) -> str:
        mb = self.done / 1e6
        if self.total:
            return f"rbcray: downloading {self.name}: {mb:.1f} / {self.total / 1e6:.1f} MB ({100 * self.done // self.total}%)"
        return f"rbcray: downloading {self.name}: {mb:.1f} MB"

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last > 0.25:
            self.last = now
            print("\r" + self._line(), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print("\r" + self._line(), file=sys.stderr, flush=True)
        elif self.enabled:
            print(f"rbcray: downloaded {self.name}: {self.done / 1e6:.1f} MB", file=sys.stderr, flush=True)


def _stream(url: str, out: IO[bytes], name: str, progress: bool, timeout: float) -> None:
    from rbcray import __version__

    req = urllib.request.Request(url, headers={"User-Agent": f"rbcray/{__version__}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        length = r.headers.get("Content-Length")
        bar = _Progress(name, url, int(length) if length and length.isdigit() else None, progress)
        out.seek(0)
        out.truncate()
        for block in iter(lambda: r.read(_CHUNK), b""):
            try:
                out.write(block)
            except OSError as e:
                raise DataError(f"{out.name}: cannot write the download ({e.strerror or e})") from None
            bar.update(len(block))
        bar.close()


def _fetch(urls: Sequence[str], tmp: Path, info: DatasetInfo, dest: Path, progress: bool, timeout: float) -> str:
    """Download the first of ``urls`` that exists into ``tmp``; returns the URL used."""
    errors = []
    with open(tmp, "wb") as out:
        for url in urls:
            try:
                _stream(url, out, info.name, progress, timeout)
                return url
            except urllib.error.HTTPError as e:
                errors.append(f"{url}: HTTP {e.code} {e.reason}")
                if e.code != 404:  # only a missing branch/commit is worth trying the next address
                    break
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
                break
    raise DataError(offline_message(info, "; ".join(errors), dest))


def _archive_prefix(zf: zipfile.ZipFile, entries: Sequence[ManifestEntry], label: str) -> str:
    """The archive's top folder ('REPO-BRANCH/'), or '' when the files sit at its root."""
    names = zf.namelist()
    if any(n == entries[0].archive_path for n in names):
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and any("/" in n for n in names):
        return tops.pop() + "/"
    raise DataError(f"{label}: archive has neither a single top folder nor {entries[0].archive_path} at its root")


def _publish(stage: Path, dest: Path, info: DatasetInfo) -> None:
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    try:
        os.rename(stage, dest)
    except OSError as e:
        if holds(dest, info):  # another process finished the same download first
            shutil.rmtree(stage, ignore_errors=True)
            return
        raise DataError(f"{dest}: cannot move the verified download into place ({e.strerror or e})") from None


def install_archive(
    archive: str | Path, info: DatasetInfo, dest: str | Path, entries: Sequence[ManifestEntry], label: str | None = None
) -> Path:
    """Extract the manifest's files from a zip archive, verify them, and publish them as ``dest``."""
    archive, dest = Path(archive), Path(dest)
    label = label or str(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{label}: not a readable zip archive ({e})") from None
    with zf:
        prefix = _archive_prefix(zf, entries, label)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # mkdir (not mkdtemp, which makes it 0700) so the published folder gets the usual permissions
        stage = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.partial"
        stage.mkdir()
        try:
            for e in entries:
                try:
                    member = zf.getinfo(prefix + e.archive_path)
                except KeyError:
                    raise DataError(f"{label}: {e.archive_path} is missing from the archive (it gives {e.path})") from None
                out = stage / e.path
                out.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                try:
                    with zf.open(member) as src, open(out, "wb") as f:
                        for block in iter(lambda: src.read(_CHUNK), b""):  # noqa: B023 (consumed in the loop)
                            h.update(block)
                            f.write(block)
                except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                    raise DataError(f"{label}: {e.archive_path} is corrupt in the archive ({err})") from None
                if h.hexdigest() != e.sha256:
                    raise DataError(
                        f"{label}: checksum mismatch for {e.path} ({e.archive_path} in the archive): "
                        f"expected sha256 {e.sha256}, got {h.hexdigest()}"
                    )
            _publish(stage, dest, info)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return dest


def _entries(info: DatasetInfo, manifest: str | Path | Sequence[ManifestEntry] | None) -> list[ManifestEntry]:
    if manifest is None:
        return load_manifest(info.name)
    if isinstance(manifest, (str, Path)):
        return load_manifest(Path(manifest))
    return list(manifest)


def _offline() -> bool:
    return os.environ.get("RBCRAY_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def download_dataset(
    info: DatasetInfo,
    dest: str | Path,
    url: str | None = None,
    manifest: str | Path | Sequence[ManifestEntry] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Populate ``dest`` with the verified files of ``info`` and return it.

    An archive already saved as ``<dest's parent>/<name>.zip`` (a manual download) is used first
    and kept; otherwise ``url`` (default: ``info.urls``, the next one tried only on HTTP 404) is
    downloaded to a temporary file beside ``dest``, removed afterwards. ``manifest`` defaults to the
    packaged one. Network failures and ``RBCRAY_OFFLINE=1`` raise :class:`DataError` saying what to
    download and where to put it; a bad checksum or missing file names the file. ``dest`` is
    created only complete and verified.
    """
    dest = Path(dest).expanduser()
    entries = _entries(info, manifest)
    if holds(dest, info):
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest}: exists but does not hold dataset {info.name!r}; remove it and run again")
    placed = dest.parent / f"{info.name}.zip"
    if url is None and placed.is_file():
        return install_archive(placed, info, dest, entries)
    if _offline():
        raise DataError(offline_message(info, "RBCRAY_OFFLINE is set", dest))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{info.name}.", suffix=".zip.partial", dir=dest.parent)
    except OSError as e:
        raise DataError(f"{dest.parent}: cannot create the download cache ({e.strerror or e})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        used = _fetch((url,) if url else info.urls, tmp, info, dest, progress, timeout)
        return install_archive(tmp, info, dest, entries, label=used)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_dataset(name: str, data_dir: str | Path | None = None, verify: bool = False, download: bool = True) -> Path:
    """Resolve (downloading if needed) dataset ``name``; with ``verify`` also check every checksum.

    Meant for ``rbcray fetch NAME [--data-dir DIR] [--verify]``, which prints the returned folder.
    """
    root = resolve_dataset(name, data_dir, download=download)
    if verify:
        problems = verify_local(root, name)
        if problems:
            raise DataError(
                f"{root}: {len(problems)} file(s) differ from the published {name} checksums; first: {problems[0]}"
            )
    return root


# ----------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rbcray.data.download --make-manifest DIR [--name N] [--out FILE]`` or ``--verify DIR --name N``."""
    ap = argparse.ArgumentParser(prog="python -m rbcray.data.download", description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--make-manifest", metavar="DIR", help="print (or --out) the checksum manifest of a local copy")
    g.add_argument("--verify", metavar="DIR", help="check a local copy against the packaged checksums of --name")
    ap.add_argument("--name", help="dataset name (default: the folder's name)")
    ap.add_argument("--out", help="write the manifest to this file instead of stdout")
    args = ap.parse_args(argv)
    try:
        if args.make_manifest:
            text = make_manifest(args.make_manifest, args.name)
            if args.out:
                atomic_write_bytes(args.out, text.encode())
            else:
                sys.stdout.write(text)
            return 0
        name = args.name or Path(args.verify).name
        problems = verify_local(args.verify, dataset_info(name).name)
        for p in problems:
            print(p)
        print(f"{args.verify}: {'OK' if not problems else f'{len(problems)} problem(s)'}", file=sys.stderr)
        return 1 if problems else 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
