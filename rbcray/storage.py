"""Local paths and object-storage URIs (``s3://``, ``gs://``) behind one small interface.

Outputs that may live in object storage (checkpoints, generated shards, evaluation results) go
through these helpers. Credentials come from the standard environment and config files of each
backend (``AWS_*`` variables, ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS`` ...) and are never
printed. A custom S3 endpoint (MinIO, a test server) is taken from ``AWS_ENDPOINT_URL``.

Writes are atomic: a local file is written under a temporary name and renamed; an object-store
object is created by a single PUT, which readers see whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from typing import Any

from rbcray.errors import RbcrayError

REMOTE_SCHEMES = ("s3", "gs", "gcs")


def scheme(uri: str) -> str:
    """URI scheme ('' for local paths)."""
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def is_remote(uri: str) -> bool:
    return scheme(uri) in REMOTE_SCHEMES


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with '/'."""
    out = uri.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def _fsspec_options(uri: str) -> dict[str, Any]:
    if scheme(uri) == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def filesystem(uri: str):
    """(fsspec filesystem, path inside it) for a local path or URI."""
    import fsspec

    s = scheme(uri)
    if s and s not in REMOTE_SCHEMES and s != "file":
        raise RbcrayError(f"{uri}: unsupported storage scheme {s!r} (use a local path, s3:// or gs://)")
    try:
        fs, path = fsspec.core.url_to_fs(uri, **_fsspec_options(uri))
    except ImportError as e:
        raise RbcrayError(f"{uri}: the {s}:// backend is not installed ({e.name})") from None
    return fs, path


def pyarrow_filesystem(uri: str):
    """(pyarrow filesystem, path) — what Ray Train's ``RunConfig(storage_filesystem=...)`` takes."""
    import pyarrow.fs as pafs

    if scheme(uri) == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict[str, Any] = {}
        if endpoint:
            kwargs["endpoint_override"] = endpoint
            kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), uri.split("://", 1)[1]
    if is_remote(uri):
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    path = os.path.abspath(uri)
    return pafs.LocalFileSystem(), path


@contextlib.contextmanager
def _named(uri: str, verb: str):
    """Turn a backend's refusal (denied access, no such bucket, a file in the way) into one
    :class:`RbcrayError` line naming ``uri``; ``FileNotFoundError`` passes through for callers."""
    try:
        yield
    except (RbcrayError, FileNotFoundError):
        raise
    except PermissionError as e:
        raise RbcrayError(f"{uri}: access denied (cannot {verb}: {_brief(e)})") from None
    except OSError as e:
        raise RbcrayError(f"{uri}: cannot {verb} ({_brief(e)})") from None


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    with _named(uri, "check"):
        fs.invalidate_cache()  # object-store listings are cached per process; other processes write too
        return bool(fs.exists(path))


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    try:
        with _named(uri, "read"), fs.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise RbcrayError(f"{uri}: not found") from None


def write_bytes(uri: str, data: bytes, *, after_part: Callable[[], None] | None = None) -> None:
    """Atomically create or replace ``uri`` with ``data`` (``after_part``: tests only, called with
    half of ``data`` written, see :func:`rbcray.io.atomic_write_bytes`)."""
    if not is_remote(uri):
        from rbcray.io import atomic_write_bytes

        atomic_write_bytes(uri, data, after_part=after_part)
        return
    fs, path = filesystem(uri)
    with _named(uri, "write"), fs.open(path, "wb") as f:  # one PUT (small) or a multipart upload completed at close
        if after_part is not None:
            f.write(data[: len(data) // 2])
            f.flush()  # below the block size nothing is sent: the object appears whole at close or never
            after_part()
            data = data[len(data) // 2 :]
        f.write(data)


def listdir(uri: str) -> list[str]:
    """Names (not paths) of the entries directly under ``uri``; empty when it does not exist."""
    fs, path = filesystem(uri)
    fs.invalidate_cache()
    try:
        with _named(uri, "list"):
            entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)


def remove(uri: str) -> None:
    fs, path = filesystem(uri)
    with contextlib.suppress(FileNotFoundError), _named(uri, "remove"):
        fs.rm(path, recursive=True)


def check_writable(uri: str) -> None:
    """Fail early, with a clear message, when ``uri`` cannot be written (before any costly work)."""
    probe = join(uri, f".rbcray-write-probe-{uuid.uuid4().hex}")
    try:
        if not is_remote(uri):
            os.makedirs(uri, exist_ok=True)
        write_bytes(probe, b"probe")
        remove(probe)
    except RbcrayError as e:
        if str(e).startswith(probe):  # name the location the user gave, not the probe object
            raise RbcrayError(f"{uri}: output location is not writable ({str(e)[len(probe) + 2:]})") from None
        raise
    except PermissionError as e:
        raise RbcrayError(f"{uri}: output location is not writable ({_brief(e)})") from None
    except OSError as e:
        raise RbcrayError(f"{uri}: output location is not writable ({_brief(e)})") from None
    except Exception as e:  # noqa: BLE001 - backends raise many error types (botocore, aiohttp...)
        raise RbcrayError(f"{uri}: output location is not writable ({_brief(e)})") from None


def _brief(e: BaseException) -> str:
    """First line of an exception, with no credentials (backends never put secrets in messages)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]
