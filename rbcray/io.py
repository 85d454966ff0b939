"""File I/O shared by every stage: image codecs, JSON, atomic writes, staged output folders.

Rules this module enforces for the whole project:

- nothing half-written looks complete: files are written to a temporary name and renamed; output
  folders are built under a hidden staging name and renamed into place when finished, with their
  manifest written last;
- unreadable or malformed inputs raise :class:`~rbcray.errors.DataError` naming the file.

Images are RGB ``uint8`` arrays of shape (H, W, 3) everywhere in rbcray (OpenCV's BGR order stays
inside this module).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rbcray.errors import DataError, RbcrayError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# OpenCV would otherwise start one thread per core in every Ray worker and fight Ray for the cores.
cv2.setNumThreads(1)


# ----------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file raises :class:`DataError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def staged_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build an output folder under a staging name; rename it to ``final`` only on success.

    If the body raises, the staging folder is removed and ``final`` is untouched. An existing
    non-empty ``final`` is an error unless ``overwrite`` is true, in which case it is replaced only
    after the new folder is complete.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise RbcrayError(f"{final}: output path exists and is not a folder")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise RbcrayError(f"{final}: output folder exists and is not empty (pass --overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(final.parent, os.W_OK):
        raise RbcrayError(f"{final.parent}: output location is not writable")
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- image codecs
def _decode(buf: np.ndarray, flags: int, name: str) -> np.ndarray:
    img = cv2.imdecode(buf, flags)
    if img is None:
        raise DataError(f"{name}: not a readable image")
    return img


def _read_bytes(path: Path) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3). Greyscale is expanded; alpha is dropped."""
    path = Path(path)
    buf = _read_bytes(path)
    img = _decode(buf, cv2.IMREAD_COLOR, str(path))
    if img.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit image, got {img.dtype}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_png_unchanged(path: str | Path) -> np.ndarray:
    """Read a PNG keeping its bit depth and channels (uint16 label maps, RGB colour masks)."""
    path = Path(path)
    buf = _read_bytes(path)
    img = _decode(buf, cv2.IMREAD_UNCHANGED, str(path))
    if img.ndim == 3 and img.shape[2] >= 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    return img


def encode_png(arr: np.ndarray, compression: int = 3) -> bytes:
    """PNG bytes of an RGB uint8 (H, W, 3) or a single-channel uint8/uint16 (H, W) array."""
    if arr.ndim == 3:
        if arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"encode_png: RGB images must be uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png: expected (H, W) uint8/uint16 or (H, W, 3) uint8, got {arr.dtype} {arr.shape}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode PNG bytes as written by :func:`encode_png` (RGB order, bit depth kept)."""
    img = _decode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED, name)
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    return img


def write_png(path: str | Path, arr: np.ndarray) -> None:
    """Atomically write an array as PNG (see :func:`encode_png`)."""
    atomic_write_bytes(path, encode_png(arr))


def encode_image(arr: np.ndarray, ext: str) -> bytes:
    """Encode an RGB uint8 image for the given extension ('.png', '.jpg', ...)."""
    ext = ext.lower()
    if ext == ".png":
        return encode_png(arr)
    ok, buf = cv2.imencode(ext, cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError(f"encoding as {ext} failed")
    return buf.tobytes()


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, in natural order ('2.jpg' before '10.jpg')."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=natural_key)


def natural_key(p: str | Path) -> tuple:
    """Sort key putting '2' before '10' in file stems."""
    import re

    name = Path(p).name
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
