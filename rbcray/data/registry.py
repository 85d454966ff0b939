"""Public datasets by name: resolve ``chula-rbc-12`` / ``bccd-txl-pbc`` to a local folder.

Resolution order (the first that holds the dataset wins):

1. an explicit folder (``--data-dir``): either the dataset itself or a folder containing it;
2. ``$RBCRAY_DATA_DIR/<name>``;
3. ``../shared/data/<name>`` beside the project checkout (or the current directory);
4. the download cache ``~/.cache/rbcray/<name>`` (``$RBCRAY_CACHE_DIR`` overrides), downloading
   the public source there first if needed, with every file's SHA-256 checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rbcray.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    """A public dataset: where it comes from and how to recognise a local copy."""

    name: str
    title: str
    markers: tuple[str, ...]  # paths that must exist inside a local copy
    url: str  # the public source (an archive of the dataset's GitHub repository)
    archive_root: str  # folder inside the archive that maps to the local copy's root
    homepage: str
    citation: str


DATASETS: dict[str, DatasetInfo] = {
    "chula-rbc-12": DatasetInfo(
        name="chula-rbc-12",
        title="Chula RBC-12 (738 smears, 640x480, partial point labels)",
        markers=("Dataset", "Label"),
        url="https://github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset/archive/refs/heads/main.zip",
        archive_root="Chula-RBC-12-Dataset-main",
        homepage="https://github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset",
        citation="Naruenatthanaset et al., Red Blood Cell Segmentation with Overlapping Cell Separation "
        "and Classification on Imbalanced Dataset, arXiv:2012.01321",
    ),
    "bccd-txl-pbc": DatasetInfo(
        name="bccd-txl-pbc",
        title="BCCD frames of TXL-PBC (220 images, YOLO RBC/WBC/platelet boxes)",
        markers=("images", "labels"),
        url="https://github.com/lugan113/TXL-PBC_Dataset/archive/refs/heads/main.zip",
        archive_root="TXL-PBC_Dataset-main/TXL_PBC",
        homepage="https://github.com/lugan113/TXL-PBC_Dataset",
        citation="TXL-PBC: a freely accessible labeled peripheral blood cell dataset (BCCD re-annotation), 2024",
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """Registry entry for ``name``; unknown names list the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def is_dataset_name(source: str) -> bool:
    return source in DATASETS


def _holds(folder: Path, info: DatasetInfo) -> bool:
    return all((folder / m).exists() for m in info.markers)


def project_root() -> Path:
    """The checkout holding this package (meaningful for editable installs and tests)."""
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Where downloads go: ``$RBCRAY_CACHE_DIR`` or ``~/.cache/rbcray``."""
    env = os.environ.get("RBCRAY_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rbcray"


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for ``name``, in order (see the module docstring)."""
    cands: list[Path] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        cands += [d, d / name]
    env = os.environ.get("RBCRAY_DATA_DIR")
    if env:
        cands.append(Path(env).expanduser() / name)
    for base in (project_root(), Path.cwd()):
        cands.append(base.parent / "shared" / "data" / name)
    cands.append(cache_dir() / name)
    return cands


def resolve_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Local folder holding dataset ``name``, downloading it into the cache when needed."""
    info = dataset_info(name)
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        for c in (d, d / name):
            if _holds(c, info):
                return c
        raise DataError(f"{d}: does not hold dataset {name!r} (expected {', '.join(info.markers)} inside it or inside {d / name})")
    for c in candidate_dirs(name):
        if _holds(c, info):
            return c
    if not download:
        raise DataError(_offline_message(info))
    from rbcray.data.download import download_dataset

    return download_dataset(info, cache_dir() / name)


def _offline_message(info: DatasetInfo) -> str:
    return (
        f"dataset {info.name!r} not found locally; download {info.url} , unpack its "
        f"'{info.archive_root}' folder as {cache_dir() / info.name} (or point RBCRAY_DATA_DIR / --data-dir at it)"
    )
