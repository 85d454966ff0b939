"""How real do synthetic images look? ``rbcray evaluate``'s realism report (issue 13 item 3).

For one dataset (``realism.dataset``), every synthetic source -- the dataset's ``synthetic``
shards, or each entry of ``realism.compare`` -- is measured against the same real reference with
the weight-free metrics of :mod:`rbcray.evaluate.families` (C2ST AUC on cell-centred crops with an
image-bootstrap CI and a permutation p; KID +- its std over subsets, Fréchet distance and PRDC in
the feature space of one encoder; mask fidelity Dice/AP50 of that encoder's segmenter against the
conditioning masks), and so is the other half of the real held-out images (``real_vs_real``: the
scale every number needs).

- **Images**: the held-out real images (the sweep's val and test images, at most
  ``max_images``) are split alternately into a reference half A and a baseline half B; each
  synthetic source contributes its first (lowest-id) ``len(B)`` samples.
- **Encoder**: one :class:`~rbcray.evaluate.encoder.RealEncoder` scores everything: the file
  ``realism.encoder`` (its recorded training images are checked against the held-out images) or
  one trained here on the dataset's train-role images only; the report records which.
- **Masks**: real images' masks are derived (``rbcray annotate``), not ground truth; the
  real-vs-real mask fidelity is the segmenter's own error against them.
- **Colour inside cells** (Bailo et al. Table 1) per set, and FID/KID with torchvision's
  Inception-v3 only when its weights file is on disk (never downloaded; compare across rbcray
  runs only, it is not the TensorFlow graph of the published FID).

``report.json`` holds ``realism: {"<label>": {...}, "real_vs_real": {...}, "_setup": {...}}`` where
a label is the family name read from a source's manifest (or the ``compare`` key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from rbcray import storage
from rbcray.evaluate.data import Sample
from rbcray.evaluate.frechet import frechet_distance
from rbcray.evaluate.kid import mmd2_cubic

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's file name for these weights


def colour_stats(samples: list[Sample] | tuple[Sample, ...]) -> dict[str, Any]:
    """Per-channel mean and std of cell pixels (instances > 0) over ``samples`` (RGB, 0-255)."""
    n = 0
    s1 = np.zeros(3)
    s2 = np.zeros(3)
    for s in samples:
        if s.instances is None:
            continue
        px = s.image[s.instances > 0].astype(np.float64)
        n += len(px)
        s1 += px.sum(0)
        s2 += (px ** 2).sum(0)
    if n == 0:
        return {"mean": [float("nan")] * 3, "std": [float("nan")] * 3, "pixels": 0}
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0))
    return {"mean": [round(float(v), 2) for v in mean], "std": [round(float(v), 2) for v in std], "pixels": int(n)}


# ----------------------------------------------------------------------------- FID / KID (Inception)
def find_inception_weights(path: str | None = None) -> Path | None:
    """The Inception-v3 weights file: ``path`` if given, else torch hub's checkpoint cache."""
    if path:
        return Path(path).expanduser()
    cand = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cand if cand.is_file() else None


def inception_features(samples: list[Sample] | tuple[Sample, ...], weights: Path, batch: int = 16) -> np.ndarray:
    """(N, 2048) pool features of torchvision's Inception-v3 (images resized to 299x299)."""
    from torchvision.models import inception_v3

    from rbcray.models.fcn import load_into, load_state_file

    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    load_into(net, load_state_file(weights), weights)
    net.fc = nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats = []
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            imgs = [cv2.resize(s.image, (299, 299), interpolation=cv2.INTER_LINEAR) for s in samples[i:i + batch]]
            x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255)
            feats.append(net((x - mean) / std).numpy())
    return np.concatenate(feats).astype(np.float64)


def fid_kid(real: list[Sample] | tuple[Sample, ...], synthetic: list[Sample] | tuple[Sample, ...], weights: str | None) -> dict[str, Any]:
    """Inception FID and KID (the formulas of :mod:`.frechet` / :mod:`.kid`), or ``{"note": why not}``."""
    path = find_inception_weights(weights)
    if path is None or not path.is_file():
        where = path or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
        return {"fid": None, "kid": None, "note": f"Inception FID/KID not computed: weights not found at {where} "
                f"(rbcray never downloads; put torchvision's {INCEPTION_FILE} there or set realism.inception_weights)"}
    if len(real) < 2 or len(synthetic) < 2:
        return {"fid": None, "kid": None, "note": "FID/KID need at least 2 images per side"}
    fr, fs = inception_features(real, path), inception_features(synthetic, path)
    return {"fid": round(frechet_distance(fr, fs), 3), "kid": round(mmd2_cubic(fr, fs), 5), "n_real": len(real),
            "n_synthetic": len(synthetic), "note": "torchvision Inception-v3 features; compare across rbcray runs only"}


# ----------------------------------------------------------------------------- sources
def source_family(uri: str) -> str | None:
    """The generator family of synthetic shards: their manifest's ``family``, else the format of
    the checkpoint it names (older outputs); None for a dataset folder or an unreadable record."""
    from rbcray.errors import RbcrayError

    try:
        m = json.loads(storage.read_bytes(storage.join(uri, "_manifest.json")))
    except (OSError, ValueError, RbcrayError):
        return None
    if m.get("family"):
        return str(m["family"])
    ck = m.get("checkpoint")
    if not ck:
        return None
    from rbcray.models.registry import get_family, list_families

    for rel in ("model/model.json", "model.json"):
        try:
            fmt = json.loads(storage.read_bytes(storage.join(ck, rel))).get("format")
        except (OSError, ValueError, RbcrayError):
            continue
        return next((f for f in list_families() if get_family(f).model_format == fmt), None)
    return None


def realism_sources(cfg: Any) -> dict[str, str]:
    """label -> URI of the synthetic sources compared (see :class:`~rbcray.evaluate.config.RealismConfig`)."""
    d = cfg.realism_dataset()
    if d is None:
        return {}
    if cfg.realism.compare:
        return dict(cfg.realism.compare)
    if d.synthetic is None:
        return {}
    return {source_family(d.synthetic) or "synthetic": d.synthetic}


def check_sources(cfg: Any, held: Any) -> dict[str, Any]:
    """Open every compared source and check what it learned from against ``held`` (a Splits of
    the held-out images) before any training; returns label -> provenance for the report."""
    from rbcray.evaluate.data import open_synthetic
    from rbcray.evaluate.leakage import check_leakage, synthetic_provenance

    d = cfg.realism_dataset()
    out = {}
    for label, uri in realism_sources(cfg).items():
        src = open_synthetic(uri)
        records, unrecorded = synthetic_provenance(uri, src.kind)
        notes = check_leakage(d.name, uri, records, unrecorded, held, cfg.allow_overlap)
        out[label] = {"uri": uri, "family": source_family(uri), "count": src.count, "overlaps": notes}
    return out


# ----------------------------------------------------------------------------- the report
def _encoder(cfg: Any, plan: Any, held: Any, log: Any) -> Any:
    """The encoder of every metric: the configured file (checked) or one trained on train-role images."""
    from rbcray.data.provenance import check_no_overlap, provenance_record
    from rbcray.errors import DataError
    from rbcray.evaluate.encoder import EncoderConfig, RealEncoder

    r = cfg.realism
    if r.encoder:
        enc = RealEncoder.load(r.encoder)
        if not cfg.allow_overlap:
            try:
                check_no_overlap(enc.provenance, held)
            except DataError as e:
                raise DataError(f"realism.encoder {r.encoder}: {e}") from None
        return enc, {"source": "file", "path": r.encoder, "provenance": enc.provenance}
    pool = list(plan.pool)[: r.max_train_images]
    train = [plan.real.load(i, plan.scale) for i in pool]
    stems = [plan.real.names[i] for i in pool]
    prov = provenance_record(plan.real.dataset_name or plan.name, stems, splits=plan.splits, role="train")
    log(f"realism: training the real-image encoder on {len(train)} train-role images ({r.encoder_steps} steps)")
    enc = RealEncoder.train(train, EncoderConfig(crop=r.encoder_crop, steps=r.encoder_steps, seed=cfg.bootstrap_seed), provenance=prov)
    return enc, {"source": "trained in this evaluation", "path": None, "steps": r.encoder_steps, "provenance": prov}


def realism_report(cfg: Any, plan: Any, bundle: Any, sources: dict[str, Any], log: Any = print) -> dict[str, Any]:
    """The realism section of ``report.json`` for ``cfg.realism_dataset()`` (see the module docstring)."""
    from rbcray.evaluate.c2st import C2STParams
    from rbcray.evaluate.data import load_synthetic, open_synthetic
    from rbcray.evaluate.families import CompareParams, side_by_side

    r = cfg.realism
    held_samples = sorted((*bundle.val, *bundle.test), key=lambda s: (len(s.name), s.name))[: r.max_images]
    held_samples = [s for s in held_samples if s.instances is not None]
    if len(held_samples) < 4:
        return {"_setup": {"dataset": bundle.name, "note": f"realism needs >= 4 held-out real images with masks, "
                           f"found {len(held_samples)}"}}
    ref, other = held_samples[0::2], held_samples[1::2]
    synthetic: dict[str, list[Sample]] = {}
    for label, info in sources.items():
        n = min(len(other), info["count"])
        syn = bundle.synthetic if info["uri"] == cfg.realism_dataset().synthetic and len(bundle.synthetic) >= n else None
        synthetic[label] = list(syn[:n]) if syn is not None else load_synthetic(open_synthetic(info["uri"]), n, plan.scale)
    enc, enc_info = _encoder(cfg, plan, held_splits(plan), log)
    params = CompareParams(c2st=C2STParams(crop_factor=r.crop_factor, max_crops_per_image=r.max_crops_per_image, epochs=r.epochs,
                                           n_boot=r.n_boot, n_perm=r.n_perm, seed=cfg.bootstrap_seed),
                           kid_subsets=r.kid_subsets, n_boot=r.n_boot, seed=cfg.bootstrap_seed)
    out = side_by_side(enc, ref, other, synthetic, params, log=log)
    for label, block in out.items():
        if label.startswith("_"):
            continue
        sset = other if label == "real_vs_real" else synthetic[label]
        block["colour_inside_cells"] = colour_stats(sset)
        block["inception"] = fid_kid(ref, sset, r.inception_weights)
        if label != "real_vs_real":
            block.update(family=sources[label]["family"], source=sources[label]["uri"], overlaps=sources[label]["overlaps"])
        else:
            block["note"] = "the other half of the held-out real images; masks derived ('rbcray annotate'), not ground truth"
    out["_setup"].update(dataset=bundle.name, encoder=enc_info, reference=[s.name for s in ref], baseline=[s.name for s in other],
                         colour_reference=colour_stats(ref), held_out="val + test images of the sweep")
    return out


def held_splits(plan: Any) -> Any:
    """The held-out images of a dataset plan as a Splits (the split file's, or the test images used)."""
    from rbcray.data.splits import Splits

    if plan.splits is not None:
        return plan.splits
    names = plan.real.names
    return Splits(dataset=plan.real.dataset_name, roles={"val": tuple(names[i] for i in plan.val_idx),
                                                         "test": tuple(names[i] for i in plan.test_idx)})


def realism_markdown(report: dict[str, Any]) -> str:
    """``realism.md`` (and the realism section of ``table.md``): one row per set, every interval."""
    from rbcray.evaluate.families import markdown_table

    st = report.get("_setup", {})
    lines = [f"## Image realism: {st.get('dataset', '')} (weight-free metrics, real vs real beside)", ""]
    if "note" in st:
        return "\n".join(lines + [f"Not computed: {st['note']}.", ""])
    enc = st["encoder"]
    blocks = {k: v for k, v in report.items() if not k.startswith("_")}
    lines += [
        f"Reference: {len(st['reference'])} held-out real images; each row compares {len(st['baseline'])} images with it "
        f"(real_vs_real: the other held-out half). Cell-centred crops of {st['crop']} px (median cell "
        f"{st['cell_diameter']} px). Encoder/segmenter: {enc['source']}"
        + (f" ({enc['path']})" if enc.get("path") else "")
        + f", learned from {enc['provenance'].get('n_images', '?')} real {enc['provenance'].get('split', '?')} images only.",
        "",
        markdown_table(report),
        "",
        "C2ST: 0.5 = indistinguishable; KID ~ 0 and Fréchet as low as real_vs_real = as close as two real halves. "
        "Mask fidelity rests on derived masks (not ground truth); real_vs_real's is the segmenter's own error.",
        "",
        "| | family | mean R, G, B inside cells | std R, G, B inside cells |",
        "|---|---|---|---|",
        f"| reference | real | {', '.join(f'{v:.1f}' for v in st['colour_reference']['mean'])} | "
        f"{', '.join(f'{v:.1f}' for v in st['colour_reference']['std'])} |",
    ]
    for name, b in blocks.items():
        c = b["colour_inside_cells"]
        lines.append(f"| {name} | {b.get('family') or ('real' if name == 'real_vs_real' else '?')} | "
                     f"{', '.join(f'{v:.1f}' for v in c['mean'])} | {', '.join(f'{v:.1f}' for v in c['std'])} |")
    inc = [(n, b["inception"]) for n, b in blocks.items()]
    lines.append("")
    if all(i.get("fid") is None for _, i in inc):
        lines.append(f"- {inc[0][1]['note']}." if inc else "")
    else:
        lines += [f"- {n}: Inception FID {i['fid']}, KID {i['kid']}." for n, i in inc if i.get("fid") is not None]
    for name, b in blocks.items():
        if b.get("overlaps"):
            lines.append(f"- {name}: --allow-overlap: {b['overlaps'][0]}")
    return "\n".join(lines + [""])
