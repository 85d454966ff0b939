"""Object-level storage operations of the generation engine, with bounded retries.

What :mod:`rbcray.storage` lacks for running at scale on object storage: transient errors
(throttling, 5xx, dropped connections) retried with bounded exponential backoff, while anything
deterministic (missing object, access denied, a bad argument) fails at once; an exclusive create
(S3 ``If-None-Match: *``, ``O_EXCL`` locally) for the run lease; and one paged LIST of a prefix
that returns names and sizes without reading any object.
"""

from __future__ import annotations

import errno
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rbcray import storage
from rbcray.errors import RbcrayError

T = TypeVar("T")

#: attempts per operation and the backoff cap: 5 attempts span about 0.2+0.4+0.8+1.6 s
ATTEMPTS = 5
BASE_DELAY_S = 0.2
MAX_DELAY_S = 5.0

_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable",
                    "Throttling", "ThrottlingException", "503", "500", "502", "504"}
_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN, errno.EIO}


class TransientStorageError(OSError):
    """A storage error worth retrying (raised by tests' fault injection, and recognised below)."""


def is_transient(e: BaseException) -> bool:
    """Throttling, server errors, timeouts and dropped connections; never a 4xx or a bad argument."""
    if isinstance(e, TransientStorageError | TimeoutError | ConnectionError):
        return True
    if isinstance(e, RbcrayError | FileNotFoundError | FileExistsError | PermissionError):
        return False
    code = ""
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        code = str(resp.get("Error", {}).get("Code", "")) or str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in _TRANSIENT_CODES:
        return True
    if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
        return True
    name = type(e).__name__
    if name in ("ClientOSError", "ServerDisconnectedError", "ServerTimeoutError", "EndpointConnectionError",
                "ConnectTimeoutError", "ReadTimeoutError", "IncompleteReadError"):
        return True
    cause = e.__cause__ or e.__context__
    return cause is not None and cause is not e and is_transient(cause)


def retrying(fn: Callable[[], T], what: str, attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``; transient failures are retried with jittered exponential backoff, at most
    ``attempts`` times in all, then reported in one line naming ``what``."""
    for k in range(attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - classified just below
            if not is_transient(e):
                raise
            if k == attempts - 1:
                raise RbcrayError(f"{what}: storage kept failing after {attempts} attempts ({storage._brief(e)})") from None
            sleep(min(MAX_DELAY_S, BASE_DELAY_S * 2**k) * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")


#: fault injection for tests: called with (operation, uri) before each write; may raise
_write_hook: Callable[[str, str], None] | None = None


def write(uri: str, data: bytes, *, after_part: Callable[[], None] | None = None) -> None:
    """:func:`rbcray.storage.write_bytes` with retries (``after_part``: tests only, see there)."""

    def go() -> None:
        if _write_hook is not None:
            _write_hook("write", uri)
        storage.write_bytes(uri, data, after_part=after_part)

    retrying(go, uri)


def read(uri: str) -> bytes | None:
    """The object's bytes, or None when it does not exist (one GET, no existence check first)."""

    def go() -> bytes | None:
        fs, path = storage.filesystem(uri)
        try:
            return fs.cat_file(path)  # one GET (opening a file would HEAD it first)
        except FileNotFoundError:
            return None
        except PermissionError as e:  # a refusal is final: one line naming the object
            raise RbcrayError(f"{uri}: access denied ({storage._brief(e)})") from None

    return retrying(go, uri)


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create ``uri`` only if it does not exist; False when it already does (atomic on S3 and
    on local/POSIX filesystems)."""
    if not storage.is_remote(uri):
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        try:
            fd = os.open(uri, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, path = storage.filesystem(uri)
    if storage.scheme(uri) != "s3":
        raise RbcrayError(f"{uri}: exclusive create is implemented for s3:// and local outputs only")

    def go() -> bool:
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except Exception as e:  # noqa: BLE001 - botocore's PreconditionFailed surfaces as a ClientError/OSError
            if "PreconditionFailed" in str(e) or "412" in str(e) or "At least one of the pre-conditions" in str(e):
                return False
            raise
        return True

    return retrying(go, uri)


def list_sizes(prefix: str) -> dict[str, int]:
    """Names and sizes of the objects directly under ``prefix`` (a folder), from one paged LIST;
    empty when it does not exist."""

    def go() -> dict[str, int]:
        fs, path = storage.filesystem(prefix)
        fs.invalidate_cache()
        try:
            entries = fs.ls(path, detail=True)
        except FileNotFoundError:
            return {}
        return {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in entries if e.get("type") != "directory"}

    return retrying(go, prefix)


def move(src: str, dst: str) -> bool:
    """Move ``src`` to ``dst`` (server-side copy + delete on object storage); False when ``src``
    does not exist."""
    if not storage.is_remote(src):
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            return False
        return True
    fs, a = storage.filesystem(src)
    _, b = storage.filesystem(dst)

    def go() -> bool:
        try:
            if storage.scheme(src) == "s3":  # one CopyObject (s3fs's copy would HEAD, then LIST a missing key)
                bucket, key = a.split("/", 1)
                dbucket, dkey = b.split("/", 1)
                fs.call_s3("copy_object", Bucket=dbucket, Key=dkey, CopySource={"Bucket": bucket, "Key": key})
            else:
                fs.copy(a, b)
        except FileNotFoundError:
            return False
        except Exception as e:  # noqa: BLE001 - botocore's NoSuchKey
            if "NoSuchKey" in str(e) or "Not Found" in str(e) or "404" in str(e):
                return False
            raise
        fs.rm_file(a)
        return True

    return retrying(go, src)


def remove(uri: str) -> None:
    """Delete one object or local file (one DELETE; absent is fine)."""

    def go() -> None:
        fs, path = storage.filesystem(uri)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass

    retrying(go, uri)


def info(uri: str) -> dict[str, Any] | None:
    """Size/ETag of an object, or None when it does not exist."""
    fs, path = storage.filesystem(uri)

    def go() -> dict[str, Any] | None:
        fs.invalidate_cache()
        try:
            return dict(fs.info(path))
        except FileNotFoundError:
            return None

    return retrying(go, uri)
