"""The data-stage CLI end to end on real Chula images: annotate -> stats; bad input exits 2."""

from __future__ import annotations

import json

import pytest

from rbcray.cli import main


def test_annotate_then_stats(tmp_path, chula_root, capsys) -> None:
    out = tmp_path / "ann"
    assert main(["annotate", "chula-rbc-12", "--data-dir", str(chula_root), "--out", str(out), "--limit", "3"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["n_samples"] == 3 and meta["kind"] == "annotated"
    assert sorted(p.name for p in (out / "instances").iterdir()) == ["1.png", "2.png", "3.png"]
    capsys.readouterr()
    assert main(["stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| RBCs per image |" in printed and "Clark-Evans" in printed
    st = json.loads((out / "stats.json").read_text())
    assert st["n_images"] == 3 and 30 < st["synthesis"]["cell_size"] < 80
    assert 40 < st["table1"]["cells_per_image"]["mean"] < 200


@pytest.mark.parametrize(
    "argv, message",
    [
        (["annotate", "chula-rbc-12", "--out", "X", "--limit", "0"], "--limit 0: must be a positive number"),
        (["annotate", "/no/such/folder", "--out", "X"], "/no/such/folder: neither a known dataset name"),
        (["stats", "/no/such/dataset"], "/no/such/dataset: dataset folder not found"),
        (["fetch", "no-such-set"], "unknown dataset 'no-such-set'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys) -> None:
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_existing_output_is_not_overwritten(tmp_path, chula_root, capsys) -> None:
    out = tmp_path / "ann"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["annotate", "chula-rbc-12", "--data-dir", str(chula_root), "--out", str(out), "--limit", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine" and not (out / "dataset.json").exists()
