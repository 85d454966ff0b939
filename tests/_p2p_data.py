"""Test helper: a small real dataset folder from Chula images, masks derived by rbcray's annotator.

Tests of the pix2pixHD stage need real smears with plausible instance maps; they use the same
classical segmentation as ``rbcray annotate`` (Chula settings), so they exercise the real path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rbcray.data.annotate import annotate_image, config_for_source
from rbcray.data.dataset import DatasetWriter
from rbcray.data.formats import relabel_sequential
from rbcray.io import read_image
from rbcray.models.pix2pixhd.model import Pix2PixHDConfig
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig

#: the smallest pix2pixHD that still runs both stages (tests of the training and export paths)
TINY = Pix2PixHDTrainConfig(
    model=Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_blocks_local=1, n_down_E=3),
    crop_size=(64, 64), stage1_epochs=1, stage2_epochs=1, freeze_global_epochs=1, vgg_loss=False,
    samples_per_epoch=4, batch_size=2, style_clusters=3,
)


def quick_instances(img: np.ndarray) -> np.ndarray:
    """The instance map ``rbcray annotate`` derives for a Chula smear."""
    inst, _ = annotate_image(img, config_for_source("chula-rbc-12"))
    return inst


def make_dataset(chula_root: Path, out: Path, stems: tuple[str, ...] = ("1", "2", "3", "4")) -> Path:
    """A dataset folder with the given Chula images and derived masks."""
    with DatasetWriter(out, name="chula-test", kind="test") as w:
        for s in stems:
            img = read_image(chula_root / "Dataset" / f"{s}.jpg")
            w.add(f"c{s}", quick_instances(img), image=img)
    return out


def make_crops_dataset(chula_root: Path, out: Path, size: int = 64) -> Path:
    """Two real size x size crops (Chula images 1 and 2, centre region) with their instance maps."""
    with DatasetWriter(out, name="chula-crops", kind="test") as w:
        for s in ("1", "2"):
            img = read_image(chula_root / "Dataset" / f"{s}.jpg")
            inst = quick_instances(img)
            y0, x0 = 200, 280
            w.add(f"crop{s}", relabel_sequential(inst[y0 : y0 + size, x0 : x0 + size]), image=img[y0 : y0 + size, x0 : x0 + size])
    return out
