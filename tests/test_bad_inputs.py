"""The bad-input corpus: every command, given what users really give it, fails in one clear line.

Each case runs the CLI in this process (``rbcray.cli.main``) and checks the contract of
:mod:`rbcray.errors`: exit status 2, exactly one line on stderr reading ``rbcray CMD: error: ...``
that names the offending file or value, no traceback, and nothing left behind that looks like a
finished output (the ``absent`` paths). A few cases run ``python -m rbcray`` in a subprocess to
check the same from the outside (argument errors, non-UTF-8 paths). The table is mirrored in
docs/bad-inputs.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from rbcray.cli import main
from rbcray.io import encode_png, read_image, read_json

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the inputs
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny (truncated) data chunk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _smear(seed: int = 0, w: int = 96, h: int = 72) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (225, 200, 210), np.uint8)
    for _ in range(12):
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), 7, (200, 120, 140), -1)
    return img


@dataclass
class World:
    """Paths of the good and bad inputs every case draws from (built once per module)."""

    root: Path
    p: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, k: str) -> str:
        return str(self.p[k])


@pytest.fixture(scope="module")
def world(tmp_path_factory, inputs) -> World:
    from synth_data import make_dataset

    root = tmp_path_factory.mktemp("bad inputs")  # a space in every path
    w = World(root)
    p = w.p
    p["ds"] = make_dataset(root / "ds", n_images=2)
    p["stats"] = Path(inputs["stats"])
    p["shapes"] = Path(inputs["shapes"])
    p["model"] = Path(inputs["checkpoint"])

    def folder_with(name: str, data: bytes, fname: str = "a.png") -> None:
        d = root / name
        d.mkdir()
        (d / fname).write_bytes(data)
        p[name] = d
        p[name + "/file"] = d / fname

    good = encode_png(_smear())
    folder_with("empty-img", b"")
    folder_with("truncated-img", good[: len(good) // 2])
    folder_with("text-img", b"hello, I am not an image\n")
    folder_with("bomb-img", _png_header_only(30000, 30000))

    # stats with bad values
    st = read_json(p["stats"])
    for name, path_in, val in (("stats-nan", ("synthesis", "cell_size"), float("nan")),
                               ("stats-neg", ("synthesis", "cells_mean"), -5.0)):
        bad = json.loads(json.dumps(st))
        bad[path_in[0]][path_in[1]] = val
        p[name] = root / f"{name}.json"
        p[name].write_text(json.dumps(bad))  # json writes NaN as NaN (what a buggy tool leaves)

    # shape banks that are not
    p["shapes-corrupt"] = root / "corrupt.parquet"
    p["shapes-corrupt"].write_bytes(b"PAR1" + os.urandom(200))
    import pyarrow as pa
    import pyarrow.parquet as pq

    p["shapes-schema"] = root / "schema.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), p["shapes-schema"])

    # configs
    for name, text in (("bad.yaml", "width: [1, 2\n"), ("unknown.yaml", "widht: 64\n"), ("type.yaml", "width: wide\n"),
                       ("bad.json", '{"stage1_epochs": 1,'), ("unknown.json", '{"stage1_epochs": 1, "epochz": 3}'),
                       ("type.json", '{"stage1_epochs": "one"}'), ("sweep-bad.yaml", "models: [fcn\n"),
                       ("sweep-unknown.yaml", "modles: [fcn]\n"), ("latin1.yaml", None)):
        p[name] = root / name
        if text is None:
            p[name].write_bytes("width: 64 # größe\n".encode("latin-1"))
        else:
            p[name].write_text(text)

    # masks for 'rbcray styles'
    from synth_data import ellipse_instances

    p["mask-good"] = root / "mask-good.png"
    p["mask-good"].write_bytes(encode_png(ellipse_instances(np.random.default_rng(0), 64, 64, 4)))
    pal = np.zeros((40, 40, 3), np.uint8)
    pal[10:20, 10:20] = (1, 2, 3)  # not a palette colour
    p["mask-unknown-colour"] = root / "mask-unknown-colour.png"
    p["mask-unknown-colour"].write_bytes(encode_png(pal))
    from rbcray.data.formats import PALETTE

    yy, xx = np.mgrid[0:300, 0:300]
    many = PALETTE[(xx % 3) + 3 * (yy % 2)].astype(np.uint8)  # 90000 one-pixel cells
    p["mask-too-many"] = root / "mask-too-many.png"
    p["mask-too-many"].write_bytes(encode_png(many))

    # checkpoints
    import shutil

    model_dir = p["model"] / "model"
    p["ckpt-truncated"] = root / "ckpt-truncated"
    shutil.copytree(p["model"], p["ckpt-truncated"])
    g = p["ckpt-truncated"] / "model" / "generator.pt"
    g.write_bytes(g.read_bytes()[:1000])
    p["ckpt-arch"] = root / "ckpt-arch"
    shutil.copytree(p["model"], p["ckpt-arch"])
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["model"]["ngf"] = 2 * cfg["model"]["ngf"]
    data = (json.dumps(cfg) + "\n").encode()
    (p["ckpt-arch"] / "model" / "config.json").write_bytes(data)
    man = json.loads((model_dir / "model.json").read_text())
    import hashlib

    man["files"]["config.json"] = hashlib.sha256(data).hexdigest()
    (p["ckpt-arch"] / "model" / "model.json").write_text(json.dumps(man))
    # a tampered manifest naming a file outside the model folder
    p["ckpt-traversal"] = root / "ckpt-traversal"
    shutil.copytree(p["model"], p["ckpt-traversal"])
    man = json.loads((model_dir / "model.json").read_text())
    man["files"]["../../stats.json"] = man["files"].pop("stats.json")
    (p["ckpt-traversal"] / "model" / "model.json").write_text(json.dumps(man))

    # a hand-made dataset folder whose image and mask sizes differ
    mism = root / "mismatch"
    (mism / "images").mkdir(parents=True)
    (mism / "instances").mkdir()
    (mism / "images" / "s.png").write_bytes(encode_png(_smear()))
    (mism / "instances" / "s.png").write_bytes(encode_png(ellipse_instances(np.random.default_rng(1), 64, 64, 4)))
    p["mismatch"] = mism
    p["mismatch/image"] = mism / "images" / "s.png"
    # a dataset folder with a broken manifest
    broken = root / "broken-manifest"
    shutil.copytree(p["ds"], broken)
    (broken / "dataset.json").write_text('{"format": ')
    p["broken-manifest"] = broken
    p["empty-dir"] = root / "empty-dir"
    p["empty-dir"].mkdir()
    p["sweep-type.yaml"] = root / "sweep-type.yaml"
    p["sweep-type.yaml"].write_text("seeds: one\n")

    # runs that an output folder may already hold: a training run (the tiny model's, copied with its
    # real dataset) and a generated dataset
    p["train-run"] = root / "train-run"
    shutil.copytree(p["model"], p["train-run"])
    p["train-data"] = p["model"].parent / "annotated"
    p["gen-run"] = root / "gen-run"
    assert main(["generate", "--checkpoint", str(p["model"]), "--shapes", str(p["shapes"]), "--stats", str(p["stats"]),
                 "--num-samples", "2", "--width", "64", "--height", "64", "--out", str(p["gen-run"]), "--local",
                 "--no-progress"]) == 0

    # morphology models for 'generate --morphology': a teardrop UNIT, a classifier, a truncated UNIT
    from morph_fixtures import make_classifier, make_unit

    p["unit-teardrop"] = Path(make_unit(root / "unit-teardrop", 7))
    p["morph-clf"] = Path(make_classifier(root / "morph-clf"))
    p["unit-truncated"] = root / "unit-truncated"
    shutil.copytree(p["unit-teardrop"], p["unit-truncated"])
    u = p["unit-truncated"] / "unit.pt"
    u.write_bytes(u.read_bytes()[:500])

    p["a-file"] = root / "a-file"
    p["a-file"].write_text("x")
    p["full"] = root / "full"
    (p["full"] / "x").mkdir(parents=True)
    return w


# ----------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[World], list[str]]
    #: text the error line must contain (formatted with the world's paths)
    says: Callable[[World], str]
    #: paths that must not exist afterwards (nothing that looks finished)
    absent: Callable[[World], list[str]] = lambda w: []


def _out(w: World, name: str) -> str:
    return str(w.root / "outs" / name)


def _gen_morph(w: World, name: str, extra: Callable[[World], list[str]]) -> list[str]:
    return ["generate", "--checkpoint", w["model"], "--shapes", w["shapes"], "--stats", w["stats"], "--num-samples", "2",
            "--width", "64", "--height", "64", "--out", _out(w, f"gm-{name}"), "--local", *extra(w)]


CASES = [
    # fetch
    Case("fetch-unknown-name", lambda w: ["fetch", "no-such-set"], lambda w: "unknown dataset 'no-such-set'"),
    Case("fetch-folder-without-the-data", lambda w: ["fetch", "chula-rbc-12", "--data-dir", w["empty-dir"]],
         lambda w: f"{w['empty-dir']}: does not hold dataset 'chula-rbc-12'"),
    # annotate
    Case("annotate-empty-image", lambda w: ["annotate", w["empty-img"], "--out", _out(w, "a1")],
         lambda w: w["empty-img/file"], lambda w: [_out(w, "a1")]),
    Case("annotate-truncated-image", lambda w: ["annotate", w["truncated-img"], "--out", _out(w, "a2")],
         lambda w: w["truncated-img/file"], lambda w: [_out(w, "a2")]),
    Case("annotate-text-named-png", lambda w: ["annotate", w["text-img"], "--out", _out(w, "a3")],
         lambda w: w["text-img/file"], lambda w: [_out(w, "a3")]),
    Case("annotate-bomb-header", lambda w: ["annotate", w["bomb-img"], "--out", _out(w, "a4")],
         lambda w: f"{w['bomb-img/file']}: image of 30000x30000 pixels", lambda w: [_out(w, "a4")]),
    Case("annotate-out-under-a-file", lambda w: ["annotate", w["text-img"], "--out", w["a-file"] + "/out"],
         lambda w: f"{w['a-file']}: cannot create the output folder (a file is in the way)"),
    Case("annotate-out-holds-another-run", lambda w: ["annotate", w["text-img"], "--out", w["full"]],
         lambda w: f"{w['full']}: output folder exists and is not empty"),
    # split
    Case("split-not-a-dataset", lambda w: ["split", w["empty-img"], "--out", _out(w, "sp.json")],
         lambda w: f"{w['empty-img']}: not a dataset folder", lambda w: [_out(w, "sp.json")]),
    # calibrate, encoder, morphology: learning commands refuse a folder that is not a dataset
    Case("calibrate-not-a-dataset", lambda w: ["calibrate", w["empty-img"], "--shapes", w["shapes"], "--out", _out(w, "p.json")],
         lambda w: f"{w['empty-img']}: not a dataset folder", lambda w: [_out(w, "p.json")]),
    Case("encoder-not-a-dataset", lambda w: ["encoder", "--data", w["empty-img"], "--out", _out(w, "enc.pt")],
         lambda w: f"{w['empty-img']}: not a dataset folder", lambda w: [_out(w, "enc.pt")]),
    Case("morphology-not-a-dataset", lambda w: ["morphology", "train", w["empty-img"], "--out", _out(w, "clf")],
         lambda w: f"{w['empty-img']}: not a dataset folder", lambda w: [_out(w, "clf")]),
    # export-coco
    Case("export-coco-not-an-output", lambda w: ["export-coco", w["empty-img"], "--out", _out(w, "coco.json")],
         lambda w: f"{w['empty-img']}: no _manifest.json", lambda w: [_out(w, "coco.json")]),
    # stats
    Case("stats-not-a-dataset", lambda w: ["stats", w["empty-img"]], lambda w: f"{w['empty-img']}: not a dataset folder"),
    Case("stats-mask-and-image-sizes-differ", lambda w: ["stats", w["mismatch"], "--json", _out(w, "st.json")],
         lambda w: f"{w['mismatch/image']}: image size 96x72 does not match its mask 64x64", lambda w: [_out(w, "st.json")]),
    Case("stats-broken-manifest", lambda w: ["stats", w["broken-manifest"]], lambda w: f"{w['broken-manifest']}/dataset.json"),
    # shapes
    Case("shapes-not-a-dataset", lambda w: ["shapes", w["text-img"], "--out", _out(w, "s.parquet")],
         lambda w: w["text-img"], lambda w: [_out(w, "s.parquet")]),
    # masks
    Case("masks-shapes-corrupt", lambda w: ["masks", "--shapes", w["shapes-corrupt"], "--stats", w["stats"], "--num", "1",
                                            "--out", _out(w, "m1")], lambda w: f"{w['shapes-corrupt']}: not a readable Parquet",
         lambda w: [_out(w, "m1")]),
    Case("masks-shapes-wrong-schema", lambda w: ["masks", "--shapes", w["shapes-schema"], "--stats", w["stats"], "--num", "1",
                                                 "--out", _out(w, "m2")], lambda w: f"{w['shapes-schema']}: not a shape bank",
         lambda w: [_out(w, "m2")]),
    Case("masks-stats-nan", lambda w: ["masks", "--shapes", w["shapes"], "--stats", w["stats-nan"], "--num", "1",
                                       "--out", _out(w, "m3")], lambda w: w["stats-nan"], lambda w: [_out(w, "m3")]),
    Case("masks-stats-negative", lambda w: ["masks", "--shapes", w["shapes"], "--stats", w["stats-neg"], "--num", "1",
                                            "--out", _out(w, "m4")], lambda w: f"{w['stats-neg']}: synthesis.cells_mean = -5", lambda w: [_out(w, "m4")]),
    Case("masks-impossible-density", lambda w: ["masks", "--shapes", w["shapes"], "--num", "1", "--width", "64", "--height", "64",
                                                "--cells-mean", "5000", "--cell-size", "30", "--out", _out(w, "m5")],
         lambda w: "the density cannot be placed", lambda w: [_out(w, "m5")]),
    Case("masks-cell-larger-than-canvas", lambda w: ["masks", "--shapes", w["shapes"], "--num", "1", "--width", "64", "--height", "64",
                                                     "--cells-mean", "3", "--cell-size", "500", "--out", _out(w, "m6")],
         lambda w: "does not fit the 64x64 canvas", lambda w: [_out(w, "m6")]),
    Case("masks-config-bad-yaml", lambda w: ["masks", "--shapes", w["shapes"], "--stats", w["stats"], "--num", "1",
                                             "--config", w["bad.yaml"], "--out", _out(w, "m7")],
         lambda w: f"{w['bad.yaml']}: not valid YAML", lambda w: [_out(w, "m7")]),
    Case("masks-config-unknown-key", lambda w: ["masks", "--shapes", w["shapes"], "--stats", w["stats"], "--num", "1",
                                                "--config", w["unknown.yaml"], "--out", _out(w, "m8")], lambda w: "'widht'",
         lambda w: [_out(w, "m8")]),
    Case("masks-config-wrong-type", lambda w: ["masks", "--shapes", w["shapes"], "--stats", w["stats"], "--num", "1",
                                               "--config", w["type.yaml"], "--out", _out(w, "m9")], lambda w: "'width'",
         lambda w: [_out(w, "m9")]),
    Case("masks-config-not-utf8", lambda w: ["masks", "--shapes", w["shapes"], "--stats", w["stats"], "--num", "1",
                                             "--config", w["latin1.yaml"], "--out", _out(w, "m10")], lambda w: w["latin1.yaml"],
         lambda w: [_out(w, "m10")]),
    Case("masks-flag-wrong-type", lambda w: ["masks", "--shapes", w["shapes"], "--num", "many", "--out", _out(w, "m11")],
         lambda w: "argument --num: invalid int value: 'many'", lambda w: [_out(w, "m11")]),
    # compare
    Case("compare-not-a-dataset", lambda w: ["compare", w["ds"], w["text-img"]], lambda w: w["text-img"]),
    Case("compare-figure-not-png", lambda w: ["compare", w["ds"], w["ds"], "--json", _out(w, "cmp.json"), "--figure",
                                              _out(w, "fig.jpg")],
         lambda w: "fig.jpg", lambda w: [_out(w, "fig.jpg"), _out(w, "cmp.json")]),
    # train
    Case("train-config-bad-json", lambda w: ["train", "--data", w["ds"], "--out", _out(w, "t1"), "--config", w["bad.json"], "--no-ray"],
         lambda w: f"{w['bad.json']}: not valid JSON", lambda w: [_out(w, "t1")]),
    Case("train-config-unknown-key", lambda w: ["train", "--data", w["ds"], "--out", _out(w, "t2"), "--config", w["unknown.json"],
                                                "--no-ray"], lambda w: "'epochz'", lambda w: [_out(w, "t2")]),
    Case("train-wait-not-a-duration", lambda w: ["train", "--data", w["ds"], "--out", _out(w, "t5"), "--config", "demo",
                                                 "--wait-for-resources", "soon"], lambda w: "--wait-for-resources 'soon'",
         lambda w: [_out(w, "t5")]),
    Case("train-config-wrong-type", lambda w: ["train", "--data", w["ds"], "--out", _out(w, "t3"), "--config", w["type.json"],
                                               "--no-ray"], lambda w: "'stage1_epochs'", lambda w: [_out(w, "t3")]),
    Case("train-data-without-images", lambda w: ["train", "--data", w["ds"], "--out", _out(w, "t4"), "--config", "demo", "--no-ray",
                                                 "--no-vgg-loss", "--epochs", "1"], lambda w: w["ds"], lambda w: [_out(w, "t4")]),
    Case("train-out-holds-another-run", lambda w: ["train", "--data", w["train-data"], "--out", w["train-run"], "--config", "demo",
                                                   "--no-ray", "--no-vgg-loss"],
         lambda w: "saved model architecture differs from this run's config"),
    # styles
    Case("styles-missing-checkpoint", lambda w: ["styles", "--checkpoint", _out(w, "nope"), "--mask", w["mask-good"],
                                                 "--out", _out(w, "st1.png")], lambda w: _out(w, "nope"), lambda w: [_out(w, "st1.png")]),
    Case("styles-unknown-palette-colour", lambda w: ["styles", "--checkpoint", w["model"], "--mask", w["mask-unknown-colour"],
                                                     "--out", _out(w, "st2.png")],
         lambda w: f"{w['mask-unknown-colour']}: colour (1, 2, 3)", lambda w: [_out(w, "st2.png")]),
    Case("styles-more-cells-than-format", lambda w: ["styles", "--checkpoint", w["model"], "--mask", w["mask-too-many"],
                                                     "--out", _out(w, "st3.png")], lambda w: "do not fit a uint16 label map",
         lambda w: [_out(w, "st3.png")]),
    Case("styles-wrong-architecture", lambda w: ["styles", "--checkpoint", w["ckpt-arch"], "--mask", w["mask-good"],
                                                 "--out", _out(w, "st4.png")], lambda w: "do not match its config",
         lambda w: [_out(w, "st4.png")]),
    Case("styles-model-json-names-outside", lambda w: ["styles", "--checkpoint", w["ckpt-traversal"], "--mask", w["mask-good"],
                                                       "--out", _out(w, "st5.png")],
         lambda w: "unexpected file name '../../stats.json'", lambda w: [_out(w, "st5.png")]),
    # generate
    Case("generate-truncated-checkpoint", lambda w: ["generate", "--checkpoint", w["ckpt-truncated"], "--shapes", w["shapes"],
                                                     "--stats", w["stats"], "--num-samples", "2", "--out", _out(w, "g1"), "--local"],
         lambda w: "generator.pt", lambda w: [_out(w, "g1") + "/manifest.json"]),
    Case("generate-shapes-wrong-schema", lambda w: ["generate", "--checkpoint", w["model"], "--shapes", w["shapes-schema"],
                                                    "--stats", w["stats"], "--num-samples", "2", "--out", _out(w, "g2"), "--local"],
         lambda w: w["shapes-schema"], lambda w: [_out(w, "g2") + "/manifest.json"]),
    Case("generate-zero-samples", lambda w: ["generate", "--checkpoint", w["model"], "--shapes", w["shapes"], "--stats", w["stats"],
                                             "--num-samples", "0", "--out", _out(w, "g3"), "--local"], lambda w: "--num-samples 0",
         lambda w: [_out(w, "g3") + "/manifest.json"]),
    Case("generate-out-holds-another-run", lambda w: ["generate", "--checkpoint", w["model"], "--shapes", w["shapes"], "--stats",
                                                      w["stats"], "--num-samples", "2", "--width", "64", "--height", "64",
                                                      "--seed", "1", "--out", w["gen-run"], "--local"],
         lambda w: f"{w['gen-run']}: holds a run with a different configuration"),
    # generate --morphology
    *[Case(f"generate-morphology-{name}", lambda w, name=name, extra=extra: _gen_morph(w, name, extra), says,
           lambda w, name=name: [_out(w, f"gm-{name}") + "/_manifest.json"]) for name, extra, says in (
        ("unknown-class", lambda w: ["--morphology", "blob:0.1", "--morphology-model", w["unit-teardrop"]],
         lambda w: "--morphology 'blob:0.1': unknown class 'blob'"),
        ("share-above-one", lambda w: ["--morphology", "teardrop:1.5", "--morphology-model", w["unit-teardrop"]],
         lambda w: "share 1.5 of teardrop must be within [0, 1]"),
        ("share-negative", lambda w: ["--morphology", "teardrop:-0.1", "--morphology-model", w["unit-teardrop"]],
         lambda w: "share -0.1 of teardrop must be within [0, 1]"),
        ("shares-sum-above-one", lambda w: ["--morphology", "teardrop:0.6,schistocyte:0.5", "--morphology-model", w["unit-teardrop"]],
         lambda w: "the shares sum to 1.1, more than 1"),
        ("without-model", lambda w: ["--morphology", "teardrop:0.1"], lambda w: "--morphology needs --morphology-model"),
        ("missing-model-dir", lambda w: ["--morphology", "teardrop:0.1", "--morphology-model", str(w.root / "no-such-unit")],
         lambda w: f"{w.root / 'no-such-unit'}: not a UNIT checkpoint"),
        ("wrong-model-dir", lambda w: ["--morphology", "teardrop:0.1", "--morphology-model", w["morph-clf"]],
         lambda w: f"{w['morph-clf']}: not a UNIT checkpoint"),
        ("model-of-another-class", lambda w: ["--morphology", "schistocyte:0.1", "--morphology-model", w["unit-teardrop"]],
         lambda w: "--morphology-model: no UNIT model for schistocyte (given: teardrop"),
        ("truncated-model", lambda w: ["--morphology", "teardrop:0.1", "--morphology-model", w["unit-truncated"]],
         lambda w: f"{w['unit-truncated']}/unit.pt: cannot load"),
        ("classifier-not-one", lambda w: ["--morphology", "teardrop:0.1", "--morphology-model", w["unit-teardrop"],
                                          "--morphology-classifier", w["unit-teardrop"]],
         lambda w: f"{w['unit-teardrop']}: not a morphology classifier checkpoint"),
        ("threshold-above-one", lambda w: ["--morphology", "teardrop:0.1", "--morphology-model", w["unit-teardrop"],
                                           "--morphology-classifier", w["morph-clf"], "--morphology-threshold", "1.5"],
         lambda w: "--morphology-threshold 1.5 must be within [0, 1]"),
        ("threshold-without-classifier", lambda w: ["--morphology", "teardrop:0.1", "--morphology-model", w["unit-teardrop"],
                                                    "--morphology-threshold", "0.9"],
         lambda w: "--morphology-threshold needs --morphology-classifier"),
    )],
    # verify
    Case("verify-not-an-output", lambda w: ["verify", w["ds"]], lambda w: w["ds"]),
    # evaluate
    Case("evaluate-bad-yaml", lambda w: ["evaluate", "--config", w["sweep-bad.yaml"], "--out", _out(w, "e1")],
         lambda w: f"{w['sweep-bad.yaml']}: not valid YAML", lambda w: [_out(w, "e1")]),
    Case("evaluate-wrong-type", lambda w: ["evaluate", "--config", w["sweep-type.yaml"], "--out", _out(w, "e3")],
         lambda w: "'seeds'", lambda w: [_out(w, "e3")]),
    Case("evaluate-unknown-key", lambda w: ["evaluate", "--config", w["sweep-unknown.yaml"], "--out", _out(w, "e2")],
         lambda w: "'modles'", lambda w: [_out(w, "e2")]),
    # demo
    Case("demo-unknown-step", lambda w: ["demo", "--out", _out(w, "d1"), "--only", "nosuchstep"], lambda w: "nosuchstep",
         lambda w: [_out(w, "d1")]),
]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_in_one_line(case: Case, world: World, capsys) -> None:
    argv = case.argv(world)
    code, out, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    errors = [ln for ln in lines if "error" in ln.lower()]
    # progress lines may come first; the error is one line, the last
    assert errors == lines[-1:], err
    assert lines[-1].startswith(f"rbcray {argv[0]}: error: "), err
    assert case.says(world) in lines[-1], err
    assert "Traceback" not in out + err
    for path in case.absent(world):
        assert not Path(path).exists(), f"{path} was left behind"


def test_corpus_covers_every_command() -> None:
    """Every subcommand has at least one case (a new command must bring its own)."""
    import argparse

    from rbcray.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    commands = set(sub.choices)
    assert len(CASES) >= 30
    covered = {cmd for cmd in commands if any(c.id.startswith(cmd + "-") for c in CASES)}
    assert commands <= covered, f"commands without a bad-input case: {sorted(commands - covered)}"


# ----------------------------------------------------------------------------- accepted and converted
def _formats(rgb: np.ndarray, folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """The same smear as grey / RGBA / palette / 16-bit / CMYK files, with the RGB rbcray must read."""
    import io

    from PIL import Image

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    quant = np.asarray(Image.fromarray(rgb).quantize(64).convert("RGB"))
    files: dict[str, tuple[bytes, np.ndarray]] = {}
    files["grey.png"] = (encode_png(grey), np.repeat(grey[:, :, None], 3, axis=2))
    ok, b = cv2.imencode(".png", cv2.cvtColor(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), cv2.COLOR_RGBA2BGRA))
    files["rgba.png"] = (b.tobytes(), rgb)  # alpha dropped, not composited
    buf = io.BytesIO()
    Image.fromarray(quant).quantize(64, dither=Image.Dither.NONE).save(buf, "PNG")
    files["palette.png"] = (buf.getvalue(), quant)
    ok, b = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    files["sixteen.png"] = (b.tobytes(), rgb)  # top 8 bits
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=100)
    files["cmyk.jpg"] = (buf.getvalue(), rgb)  # lossy: compared within a tolerance
    out = {}
    for name, (data, want) in files.items():
        (folder / name).write_bytes(data)
        out[name] = (folder / name, want)
    return out


def test_grey_rgba_palette_16bit_cmyk_are_read_as_rgb(tmp_path, capsys) -> None:
    rgb = _smear(3, 120, 90)
    for name, (path, want) in _formats(rgb, tmp_path).items():
        got = read_image(path)
        assert got.dtype == np.uint8 and got.shape == rgb.shape, name
        if name == "cmyk.jpg":
            assert np.abs(got.astype(int) - want).mean() < 3, name
        else:
            assert np.array_equal(got, want), name
    # and the command takes them: one sample per file
    assert main(["annotate", str(tmp_path), "--out", str(tmp_path / "ann"), "--cell-size", "14"]) == 0
    assert read_json(tmp_path / "ann" / "dataset.json")["n_samples"] == 5


# ----------------------------------------------------------------------------- object storage
class _DenyAll:
    """A loopback HTTP server that answers every S3 request 403 AccessDenied."""

    def __enter__(self) -> str:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message></Error>")

        class Handler(BaseHTTPRequestHandler):
            def _deny(self) -> None:  # the body (if any) is not read: the connection is closed
                self.close_connection = True
                self.send_response(403)
                self.send_header("Connection", "close")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _deny

            def log_message(self, *a) -> None:  # no access log on stderr
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _s3_cases(w: World, bucket: str) -> list[tuple[str, list[str], str]]:
    """(id, argv, text of the error) for commands reading or writing ``s3://bucket``."""
    gen = ["generate", "--checkpoint", w["model"], "--shapes", w["shapes"], "--stats", w["stats"], "--num-samples", "2",
           "--local", "--width", "64", "--height", "64"]
    return [
        ("masks-shapes-in-s3", ["masks", "--shapes", f"s3://{bucket}/shapes.parquet", "--stats", w["stats"], "--num", "1",
                                "--out", _out(w, "s3m")], f"s3://{bucket}/shapes.parquet"),
        ("generate-out-in-s3", [*gen, "--out", f"s3://{bucket}/synth"], f"s3://{bucket}/synth: output location is not writable"),
        ("styles-checkpoint-in-s3", ["styles", "--checkpoint", f"s3://{bucket}/run", "--mask", w["mask-good"],
                                     "--out", _out(w, "s3st.png")], f"s3://{bucket}/run"),
        ("verify-s3", ["verify", f"s3://{bucket}/synth"], f"s3://{bucket}/synth"),
    ]


def _check_one_line(argv: list[str], says: str, capsys) -> None:
    code, out, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert [ln for ln in lines if "error" in ln.lower()] == lines[-1:], err
    assert lines[-1].startswith(f"rbcray {argv[0]}: error: ") and says in lines[-1], err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("k", range(4))
def test_missing_bucket(k: int, world: World, s3_server, capsys) -> None:
    name, argv, says = _s3_cases(world, "no-such-bucket-rbcray")[k]
    _check_one_line(argv, says, capsys)


@pytest.mark.parametrize("k", range(4))
def test_access_denied(k: int, world: World, monkeypatch, capsys) -> None:
    with _DenyAll() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        name, argv, says = _s3_cases(world, "denied-bucket")[k]
        _check_one_line(argv, says, capsys)


# ----------------------------------------------------------------------------- from the outside
def _cli(argv: list, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = env or {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rbcray", *argv], capture_output=True, env=env, timeout=120, **kw)


def test_argument_errors_are_one_line_from_a_shell() -> None:
    r = _cli(["masks", "--shapes", "x.parquet", "--num", "many", "--out", "o"])
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and r.stdout == b""
    assert lines == ["rbcray masks: error: argument --num: invalid int value: 'many' (see 'rbcray masks --help')"]


def test_non_utf8_and_space_paths_are_named(tmp_path) -> None:
    """A folder whose name is not UTF-8 (Linux allows any bytes) and holds a space: the error line
    names it (undecodable bytes shown escaped) and the process does not crash printing it."""
    bad = os.fsencode(tmp_path) + b"/smears \xff\xfe"
    os.makedirs(bad)
    with open(bad + b"/a.png", "wb") as f:
        f.write(b"not an image")
    r = _cli([b"annotate", bad, b"--out", os.fsencode(tmp_path) + b"/out \xff"])
    err = r.stderr.decode("utf-8", "replace").strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert err[-1].startswith("rbcray annotate: error: ") and "smears " in err[-1] and "a.png: not a readable image" in err[-1]
    assert "Traceback" not in r.stderr.decode("utf-8", "replace")
    assert not os.path.exists(os.fsencode(tmp_path) + b"/out \xff")



def test_unreachable_ray_cluster_is_one_line(world: World, tmp_path) -> None:
    """``--address`` naming a port where no Ray cluster answers: one line, no traceback, no
    output left that looks finished, and no minutes of ray.init retrying a dead address."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "gen"
    r = _cli(["generate", "--checkpoint", world["model"], "--shapes", world["shapes"], "--stats", world["stats"],
              "--num-samples", "2", "--width", "64", "--height", "64", "--out", str(out), "--address", f"127.0.0.1:{port}",
              "--no-progress"], env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""})
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert err[-1].startswith(f"rbcray generate: error: cannot start or join the Ray cluster at 127.0.0.1:{port}: "
                              f"nothing answers at 127.0.0.1:{port}"), err
    assert "Traceback" not in r.stderr.decode()
    assert not (out / "_manifest.json").exists() and not (out / "_lease.json").exists()


def test_ray_init_failure_is_one_line(monkeypatch) -> None:
    """Whatever ray.init raises (a GCS that does not come up, a bad option) becomes one RbcrayError line."""
    import ray

    from rbcray.distributed.runtime import init_ray
    from rbcray.errors import RbcrayError

    def fail(**kw):
        raise RuntimeError("Failed to start GCS server\nsee the logs in /tmp/ray/session_latest")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fail)
    with pytest.raises(RbcrayError, match=r"^cannot start or join a local Ray instance: Failed to start GCS server$"):
        init_ray(address="local")

# ----------------------------------------------------------------------------- the size guard per format
def _jpeg_header(w: int, h: int) -> bytes:
    import struct

    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def _bmp_header(w: int, h: int) -> bytes:
    import struct

    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 24, 0, 0, 0, 0, 0, 0)


def _tiff_header(w: int, h: int, little: bool) -> bytes:
    import struct

    e = "<" if little else ">"
    entries = struct.pack(e + "HHII", 256, 4, 1, w) + struct.pack(e + "HHI", 257, 3, 1) + struct.pack(e + "HH", h, 0)
    return (b"II*\0" if little else b"MM\0*") + struct.pack(e + "I", 8) + struct.pack(e + "H", 2) + entries + b"\0" * 4


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "tiff-le", "tiff-be"])
def test_oversized_headers_are_refused_before_decoding(fmt: str, tmp_path) -> None:
    from rbcray.errors import DataError
    from rbcray.io import header_size

    make = {"png": _png_header_only, "jpeg": _jpeg_header, "bmp": _bmp_header,
            "tiff-le": lambda w, h: _tiff_header(w, h, True), "tiff-be": lambda w, h: _tiff_header(w, h, False)}[fmt]
    assert header_size(make(640, 480)) == (640, 480)
    path = tmp_path / f"bomb.{fmt[:4]}"
    path.write_bytes(make(40000, 20000))
    with pytest.raises(DataError, match=f"{path}: image of 40000x20000 pixels is larger than rbcray reads"):
        read_image(path)
