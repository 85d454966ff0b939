"""Public datasets by name: resolve ``chula-rbc-12`` / ``bccd-txl-pbc`` to a local folder.

The real data of paper Sec. 3 is replaced in rbcray by two public, MIT-licensed sets. Resolution
order (the first folder that holds the dataset wins):

1. an explicit folder (``--data-dir``): either the dataset itself or a folder containing it;
   when given, nothing else is searched;
2. ``$RBCRAY_DATA_DIR/<name>``;
3. ``../shared/data/<name>`` beside the project checkout (or the current directory);
4. the download cache ``~/.cache/rbcray/<name>`` (``$RBCRAY_CACHE_DIR`` overrides), downloading
   the public source there first if needed, with every file's SHA-256 checked against
   ``rbcray/data/checksums/<name>.txt`` (see :mod:`rbcray.data.download`).
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
    #: archives of the dataset's GitHub repository, tried in order while they answer HTTP 404
    #: (GitHub puts everything under one top folder, REPO-BRANCH or REPO-COMMIT; it is detected)
    urls: tuple[str, ...]
    #: local path prefix -> path prefix inside the archive (below its top folder); first match wins
    archive_map: tuple[tuple[str, str], ...]
    n_files: int  # files in a complete local copy (= lines of the checksum manifest)
    homepage: str
    citation: str
    commit: str = ""  # a commit known (from the public index) to hold the data files

    @property
    def url(self) -> str:
        """The preferred download address."""
        return self.urls[0]

    def archive_path_of(self, local: str) -> str:
        """Where the local file ``local`` (relative, '/'-separated) sits inside the archive."""
        for lp, ap in self.archive_map:
            is_prefix = lp == "" or lp.endswith("/")
            if is_prefix and local.startswith(lp):
                return ap + local[len(lp):]
            if not is_prefix and local == lp:
                return ap
        raise DataError(f"{self.name}: no archive location known for {local!r}")


_CHULA_REPO = "https://github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset"
_TXL_REPO = "https://github.com/lugan113/TXL-PBC_Dataset"
_TXL_COMMIT = "bcafb7af67467b02b3bac19a95d0e43ebcc5b983"

DATASETS: dict[str, DatasetInfo] = {
    "chula-rbc-12": DatasetInfo(
        name="chula-rbc-12",
        title="Chula RBC-12 (738 smears, 640x480, partial point labels)",
        markers=("Dataset", "Label"),
        urls=(f"{_CHULA_REPO}/archive/refs/heads/main.zip",),
        archive_map=(("", ""),),
        n_files=1362,
        homepage=_CHULA_REPO,
        citation="Naruenatthanaset et al., Red Blood Cell Segmentation with Overlapping Cell Separation "
        "and Classification on Imbalanced Dataset, arXiv:2012.01321",
    ),
    "bccd-txl-pbc": DatasetInfo(
        name="bccd-txl-pbc",
        title="BCCD frames of TXL-PBC (220 images, YOLO RBC/WBC/platelet boxes)",
        markers=("images", "labels"),
        # The default branch's name could not be confirmed offline: main, then master, then the
        # commit the public index shows holding TXL_PBC/ (only 404s move on to the next one).
        urls=(
            f"{_TXL_REPO}/archive/refs/heads/main.zip",
            f"{_TXL_REPO}/archive/refs/heads/master.zip",
            f"{_TXL_REPO}/archive/{_TXL_COMMIT}.zip",
        ),
        # Only the 220 BCCD frames of TXL-PBC are taken; the archive holds all 1440 images.
        archive_map=(("LICENSE", "LICENSE"), ("classes.txt", "TXL_PBC/labels/classes.txt"), ("", "TXL_PBC/")),
        n_files=442,
        homepage=_TXL_REPO,
        citation="Lu Gan, Xi Li, TXL-PBC: a freely accessible labeled peripheral blood cell dataset, "
        "arXiv:2407.13214 (BCCD images re-annotated)",
        commit=_TXL_COMMIT,
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """Registry entry for ``name``; unknown names list the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def is_dataset_name(source: str) -> bool:
    """True when ``source`` names a registered public dataset."""
    return source in DATASETS


def holds(folder: Path, info: DatasetInfo) -> bool:
    """Whether ``folder`` looks like a local copy of ``info`` (its marker paths exist)."""
    return all((folder / m).exists() for m in info.markers)



def project_root() -> Path:
    """The checkout holding this package (meaningful for editable installs and tests)."""
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Where downloads go: ``$RBCRAY_CACHE_DIR`` or ``~/.cache/rbcray``."""
    env = os.environ.get("RBCRAY_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rbcray"


def archive_file(name: str) -> Path:
    """Where a manually downloaded archive of ``name`` is picked up: ``<cache>/<name>.zip``."""
    return cache_dir() / f"{name}.zip"


def shared_dirs() -> list[Path]:
    """The workplace's shared data folders: ``../shared/data`` beside the checkout and the cwd.

    A function of its own so tests can replace it (``monkeypatch.setattr(registry, "shared_dirs", ...)``).
    """
    out: list[Path] = []
    for base in (project_root(), Path.cwd()):
        d = base.parent / "shared" / "data"
        if d not in out:
            out.append(d)
    return out


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for ``name``, in order (see the module docstring)."""
    cands: list[Path] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        cands += [d, d / name]
    env = os.environ.get("RBCRAY_DATA_DIR")
    if env:
        cands.append(Path(env).expanduser() / name)
    cands += [d / name for d in shared_dirs()]
    cands.append(cache_dir() / name)
    return cands


def resolve_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Local folder holding dataset ``name``, downloading it into the cache when needed."""
    info = dataset_info(name)
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        for c in (d, d / name):
            if holds(c, info):
                return c
        raise DataError(
            f"{d}: does not hold dataset {name!r} (expected {', '.join(info.markers)} inside it or inside {d / name})"
        )
    for c in candidate_dirs(name):
        if holds(c, info):
            return c
    if not download:
        raise DataError(offline_message(info, "downloads are off"))
    from rbcray.data.download import download_dataset

    return download_dataset(info, cache_dir() / name)


def offline_message(info: DatasetInfo, reason: str | None = None, dest: Path | None = None) -> str:
    """One line telling the user what to download and where to put it."""
    dest = dest if dest is not None else cache_dir() / info.name
    why = f" ({reason})" if reason else ""
    return (
        f"dataset {info.name!r} is not available locally and was not downloaded{why}; download {info.url} "
        f"(or 'Download ZIP' on {info.homepage}) and save it as {dest.parent / (info.name + '.zip')} (rbcray "
        f"unpacks and checks it on the next run), or point RBCRAY_DATA_DIR / --data-dir at a folder holding "
        f"{info.name}/ ({', '.join(info.markers)}, ...)"
    )
