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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rbcray.errors import DataError, RbcrayError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# OpenCV would otherwise start one thread per core in every Ray worker and fight Ray for the cores.
cv2.setNumThreads(1)
# A codec's complaint about a bad file reaches the user as one DataError line, not as C++ log lines.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

#: Largest image rbcray decodes, in pixels (2**27, e.g. 16384 x 8192: 384 MiB as RGB). A file whose
#: header claims more is refused before any pixel memory is allocated (a decompression-bomb guard:
#: a few hundred bytes of PNG can claim 30000 x 30000 pixels, 2.5 GiB once decoded).
MAX_IMAGE_PIXELS = 1 << 27


# ----------------------------------------------------------------------------- atomic files
def _make_folder(folder: Path) -> None:
    """``mkdir -p`` whose failure (a file in the way, no permission, read-only disk) names the folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RbcrayError(f"{folder}: cannot create the output folder (a file is in the way)") from None
    except OSError as e:
        raise RbcrayError(f"{folder}: cannot create the output folder ({e.strerror or e})") from None


def atomic_write_bytes(path: str | Path, data: bytes, *, after_part: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename.

    ``after_part`` (tests only) is called when half of ``data`` is in the temporary file: a
    test's hook there kills the process to leave what a crash mid-write leaves."""
    path = Path(path)
    _make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as e:
        raise RbcrayError(f"{path}: cannot write here ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if after_part is not None:
                f.write(data[: len(data) // 2])
                f.flush()
                after_part()
                data = data[len(data) // 2 :]
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
    _make_folder(final.parent)
    if not os.access(final.parent, os.W_OK):
        raise RbcrayError(f"{final.parent}: output location is not writable")
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except OSError as e:
        raise RbcrayError(f"{final.parent}: output location is not writable ({e.strerror or e})") from None
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
def _u16(b: bytes, o: int, little: bool = False) -> int:
    return int.from_bytes(b[o : o + 2], "little" if little else "big")


def _u32(b: bytes, o: int, little: bool = False) -> int:
    return int.from_bytes(b[o : o + 4], "little" if little else "big")


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m in (0x01, *range(0xD0, 0xDA)):  # markers without a length
            i += 2
            continue
        if m in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return _u16(b, i + 7), _u16(b, i + 5)
        i += 2 + _u16(b, i + 2)
    return None


def _tiff_size(b: bytes) -> tuple[int, int] | None:
    little = b[:2] == b"II"
    ifd = _u32(b, 4, little)
    if ifd + 2 > len(b):
        return None
    size: dict[int, int] = {}
    for k in range(_u16(b, ifd, little)):
        e = ifd + 2 + 12 * k
        if e + 12 > len(b):
            break
        tag, typ = _u16(b, e, little), _u16(b, e + 2, little)
        if tag in (256, 257):
            size[tag] = _u16(b, e + 8, little) if typ == 3 else _u32(b, e + 8, little)
    return (size[256], size[257]) if len(size) == 2 else None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an image file's header claims (PNG, JPEG, BMP, TIFF), without decoding it;
    ``None`` for other or unparseable headers (the decoder then judges the file)."""
    b = bytes(data[:65536])
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        return _u32(b, 16), _u32(b, 20)
    if b[:2] == b"\xff\xd8":
        return _jpeg_size(b)
    if b[:2] == b"BM" and len(b) >= 26:
        return abs(int.from_bytes(b[18:22], "little", signed=True)), abs(int.from_bytes(b[22:26], "little", signed=True))
    if b[:4] in (b"II*\0", b"MM\0*") and len(b) >= 8:
        return _tiff_size(b)
    return None


def _decode(buf: np.ndarray, flags: int, name: str) -> np.ndarray:
    if buf.size == 0:
        raise DataError(f"{name}: empty file (0 bytes), not an image")
    size = header_size(buf[:65536].tobytes())
    if size is not None:
        w, h = size
        if w * h > MAX_IMAGE_PIXELS:
            raise DataError(f"{name}: image of {w}x{h} pixels is larger than rbcray reads "
                            f"({MAX_IMAGE_PIXELS} pixels; a guard against decompression bombs)")
        if w == 0 or h == 0:
            raise DataError(f"{name}: image header claims {w}x{h} pixels")
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as e:  # OpenCV's own size limits and assertions
        raise DataError(f"{name}: not a readable image ({str(e).strip().splitlines()[-1][:120]})") from None
    if img is None:
        raise DataError(f"{name}: not a readable image (truncated, corrupt or not an image format rbcray reads)")
    return img


def _read_bytes(path: Path) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3).

    What is accepted and how it is converted (OpenCV's ``IMREAD_COLOR``): greyscale is repeated
    into three channels, palette images are expanded, an alpha channel is dropped (not composited),
    16-bit images keep their top 8 bits (value / 256), CMYK JPEGs are converted to RGB, and a JPEG's
    EXIF orientation is applied. Refused with a :class:`DataError` naming the file: empty, truncated
    or non-image files, floating-point images, and images over :data:`MAX_IMAGE_PIXELS`.
    """
    path = Path(path)
    buf = _read_bytes(path)
    img = _decode(buf, cv2.IMREAD_COLOR, str(path))
    if img.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8- or 16-bit image, got {img.dtype}")
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
