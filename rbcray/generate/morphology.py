"""Rare red-cell morphologies in generated smears: ``rbcray generate --morphology schistocyte:0.1``.

After a sample's image is made (and, with ``--min-quality``, accepted by the quality gate), a share
of its red cells is turned into each requested class c by the trained UNIT normal -> c translator
(:mod:`rbcray.models.unit`), per sample:

1. **Which cells.** The *eligible* cells are the sample's RBC boxes not cut by the image border (a
   cut cell is no whole shape). From the sample's own ``morphology`` random stream
   (:func:`rbcray.rng.sample_rng`, independent of its mask and style streams) one permutation of
   them is drawn; classes are served in class-id order, each taking the next ``k_c`` cells, with
   ``k_c = floor(share_c * n) + [u_c < frac(share_c * n)]`` (stochastic rounding with one draw
   ``u_c`` per class: the expected share is exact even when ``share_c * n < 1``).
2. **Translate, filter, blend** (:func:`rbcray.models.unit.apply.translate_smear`): the cell-centred
   crop (the classifier's window, resized to its input size) goes through UNIT A -> B; the real-data
   morphology classifier scores the translation; only if p(c) >= t is the patch resized back and
   blended into the smear with the cosine window (exponent ``n``). A rejected cell leaves the image
   untouched and stays an unlabelled RBC. Without a classifier every translation is kept (Gupta et
   al.'s unfiltered regime) and p is not recorded.
3. **Labels.** The instance map is not changed: a translated cell keeps its host shape (the mask
   option measured in docs/morphology.md). Every RBC box gets ``morphology`` = c (accepted
   translation) or -1 (unlabelled); WBC / platelet boxes get none. Each attempt is recorded in the
   row's ``morphology_cells`` (instance id, class, p(c), accepted); the manifest sums them per
   class (requested, accepted, acceptance rate, p reached).

Everything depends only on (run seed, sample id, the sample's image and mask, the models): the
models run once per sample and class on that sample's chosen cells, so the bytes do not depend on
actor counts, shard sizes or ``--batch-size``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.config import check
from rbcray.errors import ConfigError, DataError

#: per-cell attempt records of a shard row (the ``morphology_cells`` column)
CELL_FIELDS = ("instance_id", "class", "p", "accepted")


def parse_shares(text: str) -> tuple[tuple[int, float], ...]:
    """``'schistocyte:0.1,teardrop:0.05'`` -> ((9, 0.1), (7, 0.05)), sorted by class id.

    Classes are names or numbers of :data:`rbcray.data.morphology.CLASSES` other than normal (the
    source domain); each share lies in [0, 1] and together they are at most 1.
    """
    from rbcray.data.morphology import CLASSES, class_id

    flag = f"--morphology {text!r}"
    out: dict[int, float] = {}
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        name, sep, val = part.partition(":")
        if not sep:
            raise ConfigError(f"{flag}: use CLASS:SHARE[,CLASS:SHARE...], e.g. schistocyte:0.1,teardrop:0.05")
        try:
            c = class_id(name)
        except DataError:
            raise ConfigError(f"{flag}: unknown class {name.strip()!r}; use one of {', '.join(CLASSES[1:])}") from None
        if c < 1:
            raise ConfigError(f"{flag}: class {name.strip()!r} cannot be a target (normal cells are what is translated)")
        try:
            share = float(val)
        except ValueError:
            raise ConfigError(f"{flag}: share {val.strip()!r} of {CLASSES[c]} is not a number") from None
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"{flag}: share {share:g} of {CLASSES[c]} must be within [0, 1]")
        if c in out:
            raise ConfigError(f"{flag}: class {CLASSES[c]} is given twice")
        out[c] = share
    if not out:
        raise ConfigError(f"{flag}: use CLASS:SHARE[,CLASS:SHARE...], e.g. schistocyte:0.1,teardrop:0.05")
    if sum(out.values()) > 1.0 + 1e-9:
        raise ConfigError(f"{flag}: the shares sum to {sum(out.values()):g}, more than 1 (all of a smear's cells)")
    return tuple(sorted(out.items()))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_models(shares: tuple[tuple[int, float], ...], models: str, classifier: str | None) -> dict[str, Any]:
    """Open every UNIT folder and the classifier once (before any work); returns the run's
    morphology record: per class its share, UNIT folder, weights' SHA-256 and provenance; the
    classifier's folder, SHA-256, crop and provenance (:func:`plan_record` keeps what decides bytes).

    Each ``--morphology-model`` folder (comma-separated) is a ``rbcray morphology unit`` output; its
    ``unit.json`` names its target class, and every requested class needs exactly one.
    """
    from rbcray.data.morphology import CLASSES
    from rbcray.train.unit import load_unit

    by_class: dict[int, str] = {}
    prov: dict[int, Any] = {}
    for d in [p.strip() for p in models.split(",") if p.strip()]:
        _, cfg, meta = load_unit(d)
        prov[cfg.target] = meta.get("provenance")
        if cfg.target in by_class:
            raise ConfigError(f"--morphology-model: {by_class[cfg.target]} and {d} both translate into {CLASSES[cfg.target]}")
        by_class[cfg.target] = d
    want = {c for c, _ in shares}
    for c in sorted(want - set(by_class)):
        have = ", ".join(f"{CLASSES[k]} ({d})" for k, d in sorted(by_class.items())) or "none"
        raise ConfigError(f"--morphology-model: no UNIT model for {CLASSES[c]} (given: {have}); train one with "
                          f"'rbcray morphology unit --target {CLASSES[c]}'")
    for c in sorted(set(by_class) - want):
        raise ConfigError(f"--morphology-model {by_class[c]}: translates into {CLASSES[c]}, which --morphology does not ask for")
    rec: dict[str, Any] = {"classes": {}, "classifier": None}
    for c, share in shares:
        rec["classes"][CLASSES[c]] = {"class": c, "share": share, "model": by_class[c],
                                      "unit_sha256": _sha256(Path(by_class[c]) / "unit.pt"), "provenance": prov[c]}
    if classifier is not None:
        from rbcray.train.morphology import load_classifier

        _, ccfg, meta = load_classifier(classifier)
        rec["classifier"] = {"path": classifier, "sha256": _sha256(Path(classifier) / "model.pt"),
                             "window": ccfg.window, "size": ccfg.size, "provenance": meta.get("provenance")}
    return rec


@dataclass(frozen=True)
class MorphologySpec:
    """What the morphology step needs on a generator actor (plain values: it travels to Ray actors)."""

    #: ((class id, share), ...) sorted by class id
    shares: tuple[tuple[int, float], ...]
    #: class id -> UNIT folder
    models: dict[int, str]
    classifier: str | None
    threshold: float
    n: float
    seed: int

    def __post_init__(self) -> None:
        check(0.0 <= self.threshold <= 1.0, f"--morphology-threshold {self.threshold} must be within [0, 1]")
        check(self.n > 0, f"--morphology-blend-n {self.n} must be > 0")


def choose_cells(boxes: list[dict[str, Any]], width: int, height: int, shares: tuple[tuple[int, float], ...],
                 seed: int, sample_id: int) -> dict[int, list[int]]:
    """Instance ids to translate per class for one sample (see the module docstring, step 1). Pure."""
    from rbcray.data.morphology import RBC
    from rbcray.rng import MORPHOLOGY, sample_rng

    eligible = sorted(int(b["instance_id"]) for b in boxes if int(b["class"]) == RBC and b["x0"] > 0 and b["y0"] > 0
                      and b["x1"] < width and b["y1"] < height)
    rng = sample_rng(seed, sample_id, MORPHOLOGY)
    order = rng.permutation(len(eligible))
    u = rng.random(len(shares))  # one draw per class, always: a class's count never shifts another's draws
    out: dict[int, list[int]] = {}
    pos = 0
    for (c, share), uc in zip(shares, u):
        x = share * len(eligible)
        k = min(int(np.floor(x)) + int(uc < x - np.floor(x)), len(eligible) - pos)
        out[c] = sorted(eligible[j] for j in order[pos : pos + k].tolist())
        pos += k
    return out


class MorphologyStep:
    """Loads the UNIT models and the classifier once; :meth:`apply` per generated sample."""

    def __init__(self, spec: MorphologySpec) -> None:
        from rbcray.train.unit import load_unit

        self.spec = spec
        loaded = {c: load_unit(d) for c, d in spec.models.items()}
        self.units = {c: m for c, (m, _, _) in loaded.items()}
        self.classifier = None
        self.window, self.size = 80, 32  # rbcray's default crop (MorphologyTrainConfig), for old UNIT folders
        if spec.classifier is not None:
            from rbcray.train.morphology import load_classifier

            self.classifier, ccfg, _ = load_classifier(spec.classifier)
            self.window, self.size = ccfg.window, ccfg.size
        crops = {(int(m["crop"]["window"]), int(m["crop"]["size"])) for _, _, m in loaded.values() if m.get("crop")}
        if crops:  # UNIT folders record the crop they were trained on: that decides it
            if len(crops) > 1 or (spec.classifier is not None and crops != {(self.window, self.size)}):
                raise DataError(f"--morphology-model: crops {sorted(crops)} (window px, size px) of the UNIT models and "
                                f"({self.window}, {self.size}) of the classifier differ; train them on the same crop")
            self.window, self.size = crops.pop()

    def apply(self, sample_id: int, image: np.ndarray, inst: np.ndarray, boxes: list[dict[str, Any]]
              ) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]:
        """(image, boxes with ``morphology``, attempt records) of one generated sample."""
        from rbcray.data.morphology import RBC, UNLABELLED
        from rbcray.models.unit.apply import translate_smear

        h, w = inst.shape
        chosen = choose_cells(boxes, w, h, self.spec.shares, self.spec.seed, sample_id)
        label: dict[int, int] = {}
        cells: list[dict[str, Any]] = []
        for c, ids in chosen.items():
            if not ids:
                continue
            t = self.spec.threshold if self.classifier is not None else 0.0
            res = translate_smear(self.units[c], self.classifier, image, inst, ids, c, t, self.window, self.size, self.spec.n)
            image = res.image
            for cid, p, ok in zip(res.cell_ids.tolist(), res.p_target.tolist(), res.accepted.tolist()):
                cells.append({"instance_id": int(cid), "class": int(c), "p": None if self.classifier is None else float(p),
                              "accepted": bool(ok)})
                if ok:
                    label[int(cid)] = int(c)
        out = [{**b, "morphology": label.get(int(b["instance_id"]), UNLABELLED) if int(b["class"]) == RBC else None} for b in boxes]
        return image, out, sorted(cells, key=lambda r: r["instance_id"])


def plan_record(rec: dict[str, Any], blend_n: float) -> dict[str, Any]:
    """What of :func:`check_models`' record decides the output's bytes (checksums, not paths)."""
    clf = rec["classifier"]
    return {"classes": {k: {"class": v["class"], "share": v["share"], "unit_sha256": v["unit_sha256"]} for k, v in rec["classes"].items()},
            "classifier_sha256": clf["sha256"] if clf else None, "threshold": rec["threshold"], "blend_n": blend_n}


def spec_of(plan: Any) -> dict[str, Any] | None:
    """The morphology step's settings for the generator stage (None without --morphology)."""
    rec = plan.morphology
    if rec is None:
        return None
    return {"shares": [(v["class"], v["share"]) for v in rec["classes"].values()],
            "models": {v["class"]: v["model"] for v in rec["classes"].values()},
            "classifier": plan.cfg.morphology_classifier, "threshold": float(rec["threshold"] or 0.0),
            "n": float(plan.cfg.morphology_blend_n), "seed": plan.cfg.seed}


def make_step(spec: dict[str, Any] | None) -> MorphologyStep | None:
    if spec is None:
        return None
    shares = tuple((int(c), float(s)) for c, s in spec["shares"])
    return MorphologyStep(MorphologySpec(shares, {int(k): v for k, v in spec["models"].items()}, spec["classifier"],
                                         spec["threshold"], spec["n"], spec["seed"]))


def summary(plan: Any) -> dict[str, Any] | None:
    """Per class: cells requested (translated), accepted by the filter, acceptance rate and the
    classifier's p(c) reached (read back from the shards' ``morphology_cells``)."""
    cfg = plan.cfg
    if cfg.morphology is None:
        return None
    import pyarrow.parquet as pq

    from rbcray import storage
    from rbcray.data.morphology import CLASSES

    rec = plan.plan["morphology"]
    per: dict[int, dict[str, list]] = {v["class"]: {"p": [], "ok": []} for v in rec["classes"].values()}
    eligible_rbc = 0
    for sh in plan.shards:
        tab = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(cfg.out, sh.name))), columns=["morphology_cells", "boxes"])
        for cells in tab.column("morphology_cells").to_pylist():
            for r in cells or []:
                per[r["class"]]["p"].append(r["p"])
                per[r["class"]]["ok"].append(bool(r["accepted"]))
        for boxes in tab.column("boxes").to_pylist():
            eligible_rbc += sum(1 for b in boxes if b.get("morphology") is not None)
    out: dict[str, Any] = {"threshold": rec["threshold"], "blend_n": rec["blend_n"],
                           "classifier": cfg.morphology_classifier, "rbc_cells": eligible_rbc, "classes": {}}
    for c, d in per.items():
        ps = np.array([p for p in d["p"] if p is not None], dtype=float)
        n, k = len(d["ok"]), int(sum(d["ok"]))
        out["classes"][CLASSES[c]] = {
            "share": rec["classes"][CLASSES[c]]["share"], "requested": n, "accepted": k,
            "acceptance_rate": (k / n) if n else None,
            "p_mean": float(ps.mean()) if len(ps) else None, "p_max": float(ps.max()) if len(ps) else None,
            "p_quantiles": {str(q): float(np.quantile(ps, q)) for q in (0.5, 0.9, 0.99)} if len(ps) else None,
        }
    return out
