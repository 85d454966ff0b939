"""Validation during training, for any family: score the model every N epochs, keep the best.

Every ``every`` epochs (and after the last) the current trainer is exported with its family's
export into a scratch folder, loaded back through the family-neutral translator API, and asked to
render the masks of the validation images; :mod:`rbcray.evaluate.mask_fidelity` scores those
renders with a :class:`~rbcray.evaluate.encoder.RealEncoder` trained on real train-split images
(Dice and AP50 against the masks) and :mod:`rbcray.evaluate.kid` compares their cell-centred crop
features with the real validation images'. The score that selects is the mask-fidelity Dice
(higher is better). The best model so far is copied to ``OUT/best/model/`` (files first, its
``model.json`` last), so ``rbcray generate --checkpoint OUT/best`` uses it; every score goes to
``OUT/val.json``. The validation images must be held out from training (a val split).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbcray import storage
from rbcray.config import check

BEST_DIR = "best"


@dataclass(frozen=True)
class ValSpec:
    """What to validate on: a dataset folder of val images (+ masks) and a real-image encoder file."""

    data: str
    encoder: str
    every: int = 5
    max_images: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.every >= 1, f"--val-every must be >= 1, got {self.every}")
        check(self.max_images >= 2, f"val max_images must be >= 2, got {self.max_images}")


class Validator:
    """Loads the val images and the encoder once; :meth:`__call__` scores one trainer state."""

    def __init__(self, spec: ValSpec) -> None:
        from rbcray.data.dataset import Dataset
        from rbcray.evaluate.c2st import median_cell_diameter
        from rbcray.evaluate.data import Sample
        from rbcray.evaluate.encoder import RealEncoder

        self.spec = spec
        ds = Dataset.open(spec.data)
        stems = ds.stems[: spec.max_images]
        self.real = [Sample(s, "real", ds.load_image(s), ds.load_instances(s)) for s in stems]
        self.cats = [ds.load_categories(s) for s in stems]
        self.enc = RealEncoder.load(spec.encoder)
        d = median_cell_diameter(self.real)
        self.crop = int(-(-1.5 * d // 8) * 8)
        self.history: list[dict[str, Any]] = []

    def resume(self, out: str) -> None:
        """Continue the score history of a resumed run (so 'best' compares with earlier epochs)."""
        uri = storage.join(out, "val.json")
        if storage.exists(uri):
            self.history = json.loads(storage.read_bytes(uri))

    def score(self, model_uri: str) -> dict[str, Any]:
        """Mask-fidelity Dice/AP50 and KID of the model at ``model_uri`` on the val masks."""
        from rbcray.evaluate.data import Sample
        from rbcray.evaluate.families import crop_features
        from rbcray.evaluate.kid import kid
        from rbcray.evaluate.mask_fidelity import mask_fidelity
        from rbcray.models.registry import load_translator

        tr = load_translator(model_uri, device="cpu")
        synth = [Sample(s.name, "synthetic", tr.translate([s.instances], [c], [(self.spec.seed, i)])[0], s.instances)
                 for i, (s, c) in enumerate(zip(self.real, self.cats))]
        mf = mask_fidelity(self.enc, synth, n_boot=100, seed=self.spec.seed)
        k = kid(crop_features(self.enc, self.real, self.crop, 16, self.spec.seed),
                crop_features(self.enc, synth, self.crop, 16, self.spec.seed + 1), n_subsets=20, subset_size=100)
        return {"dice": mf["dice"], "dice_ci": mf["dice_ci"], "ap50": mf["ap50"], "kid": k["kid"], "kid_std": k["std"]}

    def __call__(self, trainer: Any, family: Any, out: str, epoch: int, total: int, log: Any) -> dict[str, Any] | None:
        """Score after ``epoch`` when it is due; copy the model to ``OUT/best`` when it is the best."""
        if epoch % self.spec.every and epoch != total:
            return None
        tmp = Path(tempfile.mkdtemp(prefix="rbcray-val-"))
        try:
            family.export_fn()(trainer, str(tmp), log=lambda m: None, force=True)
            s = {"epoch": epoch, **self.score(str(tmp))}
            best = max((h["dice"] for h in self.history), default=-1.0)
            s["best"] = s["dice"] > best
            if s["best"]:
                _copy_model(tmp / "model", storage.join(out, BEST_DIR, "model"))
            self.history.append(s)
            storage.write_bytes(storage.join(out, "val.json"), (json.dumps(self.history, indent=2) + "\n").encode())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"val epoch {epoch}: mask Dice {s['dice']:.4f} [{s['dice_ci'][0]:.4f}, {s['dice_ci'][1]:.4f}] AP50 {s['ap50']:.4f} "
            f"KID {s['kid']:.5f}" + (" (best so far: OUT/best)" if s["best"] else ""))
        return s


def _copy_model(src: Path, dest: str) -> None:
    """Copy an exported model folder; ``model.json`` last, so a folder with it is complete."""
    if storage.exists(storage.join(dest, "model.json")):
        storage.remove(storage.join(dest, "model.json"))
    for p in sorted(src.iterdir(), key=lambda p: p.name == "model.json"):
        storage.write_bytes(storage.join(dest, p.name), p.read_bytes())
