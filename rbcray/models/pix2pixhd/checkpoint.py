"""pix2pixHD checkpoint files and the final model folder, on local disk or object storage.

Training checkpoints (one folder per saved epoch) hold ``state.pt``: G, D, E, both optimisers,
epoch, stage, the training config and the dataset statistics (as JSON strings), and the metric
history; beside it ``state.sha256`` (the hex SHA-256 of ``state.pt``, written first) lets a reader
tell a corrupt or half-copied ``state.pt`` from a good one. The final model folder that ``rbcray train --out URI`` leaves at ``URI/model/`` holds
what generation needs::

    URI/model/generator.pt   {"G": state dict, "E": state dict or None, "stage": 1|2, "epoch": int}
    URI/model/styles.npz     per-class K-means style centres (see rbcray.models.pix2pixhd.styles)
    URI/model/config.json    the training config (with the model config under "model")
    URI/model/stats.json     statistics of the training dataset
    URI/model/model.json     manifest (format, epoch, sha256 per file), written last

Everything is read with ``torch.load(weights_only=True)`` / ``np.load(allow_pickle=False)``: a
checkpoint can never run code. Unreadable or tampered files raise a one-line
:class:`~rbcray.errors.DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from rbcray import __version__, storage
from rbcray.errors import DataError

STATE_FILE = "state.pt"
STATE_HASH_FILE = "state.sha256"
MODEL_DIR = "model"
MODEL_FORMAT = "rbcray-pix2pixhd"
MODEL_FILES = ("generator.pt", "styles.npz", "config.json", "stats.json")


def torch_bytes(obj: Any) -> bytes:
    """Serialise tensors/dicts/lists/numbers/strings with ``torch.save`` (no custom classes)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def load_torch_bytes(data: bytes, name: str) -> Any:
    """``torch.load(weights_only=True)`` of bytes; any failure is a :class:`DataError` naming ``name``."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt zip, truncated pickle, disallowed globals...
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DataError(f"{name}: corrupt or unreadable checkpoint ({msg})") from None


def save_state(folder: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint folder (``state.sha256``, a human-readable ``config.json``, then
    ``state.pt``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = torch_bytes(state)
    storage.write_bytes(str(folder / STATE_HASH_FILE), f"{_sha256(data)}  {STATE_FILE}\n".encode())
    storage.write_bytes(str(folder / "config.json"), (json.dumps(json.loads(state["config"]), indent=2) + "\n").encode())
    storage.write_bytes(str(folder / STATE_FILE), data)


def load_state(folder: str | Path) -> dict[str, Any]:
    """Read a training checkpoint folder written by :func:`save_state` (local path or URI).

    ``state.pt`` is checked against ``state.sha256`` when the folder has one (checkpoints
    written before it was introduced have none); any mismatch or unreadable file is a :class:`DataError` naming it.
    """
    uri = storage.join(str(folder), STATE_FILE)
    try:
        data = storage.read_bytes(uri)
        hash_uri = storage.join(str(folder), STATE_HASH_FILE)
        recorded = storage.read_bytes(hash_uri).decode("ascii", "replace").split()[:1] if storage.exists(hash_uri) else None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{uri}: cannot read checkpoint ({str(e).splitlines()[0][:160]})") from None
    if recorded is not None and recorded != [_sha256(data)]:
        raise DataError(f"{uri}: corrupt checkpoint (sha256 differs from {STATE_HASH_FILE})")
    state = load_torch_bytes(data, uri)
    # any family's state (its Trainer checks the family): "rbcray-<family>-state"
    fmt = state.get("format") if isinstance(state, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith("rbcray-") or not fmt.endswith("-state") or "G" not in state:
        raise DataError(f"{uri}: not an rbcray training checkpoint")
    return state


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model(
    out_uri: str, files: dict[str, bytes], meta: dict[str, Any], fmt: str = MODEL_FORMAT, names: tuple[str, ...] = MODEL_FILES
) -> str:
    """Write the final model folder ``out_uri/model`` (files first, manifest last); returns its URI.

    ``fmt`` and ``names`` let other generator families share the layout (their format, their files).
    """
    base = storage.join(out_uri, MODEL_DIR)
    manifest = {"format": fmt, "format_version": 1, "rbcray_version": __version__, **meta, "files": {}}
    for name in names:
        if name in files:
            storage.write_bytes(storage.join(base, name), files[name])
            manifest["files"][name] = _sha256(files[name])
    storage.write_bytes(storage.join(base, "model.json"), (json.dumps(manifest, indent=2) + "\n").encode())
    return base


def model_uri(uri: str) -> str:
    """The model folder for what the user passed: a ``train --out`` URI or the model folder itself."""
    uri = uri.rstrip("/")
    if storage.exists(storage.join(uri, "model.json")):
        return uri
    if storage.exists(storage.join(uri, MODEL_DIR, "model.json")):
        return storage.join(uri, MODEL_DIR)
    if storage.exists(storage.join(uri, STATE_FILE)):
        raise DataError(f"{uri}: a training checkpoint, not a finished model; run 'rbcray train' to completion first")
    raise DataError(f"{uri}: no trained model here (expected {storage.join(uri, MODEL_DIR, 'model.json')}); "
                    "pass the --out of a finished 'rbcray train'")


def read_model(uri: str, fmt: str | None = MODEL_FORMAT) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, file bytes by name) of a model folder, every file checked against its sha256.

    ``fmt``: the manifest format required (None: any rbcray model, as
    :func:`rbcray.models.registry.open_model` reads it before it knows the family).
    """
    base = model_uri(uri)
    try:
        manifest = json.loads(storage.read_bytes(storage.join(base, "model.json")))
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{storage.join(base, 'model.json')}: not valid JSON") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if not isinstance(found, str) or (found != fmt if fmt is not None else not found.startswith("rbcray-")):
        raise DataError(f"{storage.join(base, 'model.json')}: not an rbcray {fmt or 'model'} manifest (format {found!r})")
    listed = manifest.get("files", {})
    if not isinstance(listed, dict):
        raise DataError(f"{storage.join(base, 'model.json')}: 'files' must map file names to sha256 digests")
    files = {}
    for name, digest in listed.items():
        # only the known plain names: a tampered manifest must not steer reads elsewhere ('../..', '/etc/..')
        if name not in MODEL_FILES:
            raise DataError(f"{storage.join(base, 'model.json')}: unexpected file name {name!r} (a model folder holds "
                            f"{', '.join(MODEL_FILES)})")
        data = storage.read_bytes(storage.join(base, name))
        if _sha256(data) != digest:
            raise DataError(f"{storage.join(base, name)}: corrupt (sha256 differs from model.json)")
        files[name] = data
    for name in ("generator.pt", "config.json"):
        if name not in files:
            raise DataError(f"{base}: model.json lists no {name}")
    return manifest, files
