"""Training UNIT normal -> class c on real train-split cell crops, scoring translations, the figure.

Domain A is every labelled *normal* cell (class 0) of the training images, domain B every cell of
the target class c; patches are the RGB channels of the classifier's crops
(:mod:`rbcray.data.cells`: a fixed window of source pixels centred on the cell, so size survives).
Training alternates the two explicit GAN phases of :class:`~rbcray.models.unit.networks.UNIT`
until a number of iterations or a wall-clock budget is reached, in **rounds** of
``round_iterations`` iterations (:class:`UNITRun`). Round k draws its batches, flips and latent
noise from its own streams, seeded by (seed, rank, k), so the run's state between rounds is only
the model, its two optimisers, the iteration count and the history: a run restored from
:meth:`UNITRun.state_dict` continues with exactly the numbers an uninterrupted run produces.
:func:`train_unit` runs the rounds in this process; :mod:`rbcray.distributed.train_unit` runs
them on Ray Train workers with a checkpoint after every round.

:func:`score_translations` feeds translated cells to the real-data morphology classifier with the
*host cell's* mask as the fourth channel (the host shape kept — the mask option this module
measures) and returns p(c), next to p(c) of real normal and real class-c cells of the same
images: the contrast an acceptance rate must be read against.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rbcray import storage
from rbcray.config import check, from_dict, to_dict
from rbcray.data.cells import CellCrops
from rbcray.errors import DataError, RbcrayError
from rbcray.io import staged_dir, write_json
from rbcray.models.morphology import MorphologyNet, predict_proba
from rbcray.models.registry import create_model
from rbcray.models.unit.networks import UNIT, GradSync, UNITConfig

CHECKPOINT_FORMAT = "rbcray-unit"
#: format of a training state (a round's checkpoint), not of a finished translator
STATE_FORMAT = "rbcray-unit-run"
#: prefix of the round checkpoints inside a run folder (Ray Train's ``checkpoint_dir_name``)
ROUND_PREFIX = "checkpoint_iter_"


@dataclass(frozen=True)
class UNITTrainConfig:
    """Everything that decides a trained translator (saved in its ``unit.json``)."""

    model: UNITConfig = field(default_factory=UNITConfig)
    #: morphology class to translate normal cells into (rbcray.data.morphology.CLASSES index)
    target: int = 4
    batch_size: int = 8
    #: stop after this many iterations or this many seconds, whichever comes first
    iterations: int = 20000
    max_seconds: float = 480.0
    seed: int = 0
    #: iterations per round: the unit of random streams, progress reports and checkpoints
    round_iterations: int = 100

    def __post_init__(self) -> None:
        check(1 <= self.target <= 12, f"target = {self.target}: must be a rare class 1..12 (0 is normal, the source domain)")
        check(self.batch_size >= 1, f"batch_size = {self.batch_size}: must be >= 1")
        check(self.iterations >= 1, f"iterations = {self.iterations}: must be >= 1")
        check(self.max_seconds > 0, f"max_seconds = {self.max_seconds}: must be > 0")
        check(self.round_iterations >= 1, f"round_iterations = {self.round_iterations}: must be >= 1")


def to_rgb_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 (N, 4, S, S) crops -> RGB float tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops[:, :3])).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """RGB float tensor in [-1, 1] -> uint8 (N, 3, S, S)."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().byte().cpu().numpy()


def check_domains(normal: CellCrops, rare: CellCrops, cfg: UNITTrainConfig) -> None:
    """Both domains need at least one batch of cells (a one-line DataError otherwise)."""
    if len(normal) < cfg.batch_size or len(rare) < cfg.batch_size:
        raise DataError(f"UNIT needs at least batch_size = {cfg.batch_size} cells per domain; got {len(normal)} normal, {len(rare)} of class {cfg.target}")


def _stream_seed(*key: int) -> int:
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


class UNITRun:
    """One UNIT training run in rounds: :meth:`run_round` until :attr:`done`; its state saves and restores.

    ``rank``: this worker's index in data-parallel training (each rank draws its own batches);
    ``sync(optimizer)``: averages gradients across the workers (none in one process);
    ``agree(stop)``: makes every worker take the same decision to stop on the time budget.
    """

    def __init__(self, normal: CellCrops, rare: CellCrops, cfg: UNITTrainConfig, *, rank: int = 0,
                 sync: GradSync | None = None, agree: Callable[[bool], bool] | None = None) -> None:
        check_domains(normal, rare, cfg)
        self.cfg, self.rank, self.sync, self.agree = cfg, rank, sync, agree
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.model: UNIT = create_model("unit", **to_dict(cfg.model))
        self.model.train()
        self.xa, self.xb = to_rgb_tensor(normal.crops), to_rgb_tensor(rare.crops)
        self.iteration, self.seconds = 0, 0.0
        self.history: list[dict[str, float]] = []
        self.resumes: list[int] = []  # iterations at which the run was restored

    @property
    def done(self) -> bool:
        return self.iteration >= self.cfg.iterations or self.seconds >= self.cfg.max_seconds

    def run_round(self, log: Callable[[str], None] | None = None) -> dict[str, float]:
        """Train up to the end of the current round (or the budget); returns its last metrics."""
        cfg, model = self.cfg, self.model
        k = self.iteration // cfg.round_iterations
        end = min((k + 1) * cfg.round_iterations, cfg.iterations)
        rng = np.random.default_rng([cfg.seed, self.rank, k])
        torch.manual_seed(_stream_seed(cfg.seed, self.rank, k, 1))  # the latent noise of this round
        t0, base = time.perf_counter(), self.seconds
        metrics: dict[str, float] = {}
        while self.iteration < end:
            stop = base + time.perf_counter() - t0 >= cfg.max_seconds
            if self.agree is not None:
                stop = self.agree(stop)
            if stop:
                # the budget is spent (on some worker): every worker is done
                self.seconds = max(base + time.perf_counter() - t0, cfg.max_seconds)
                break
            a = self.xa[torch.from_numpy(rng.integers(0, len(self.xa), cfg.batch_size))]
            b = self.xb[torch.from_numpy(rng.integers(0, len(self.xb), cfg.batch_size))]
            if rng.random() < 0.5:  # cells have no preferred orientation
                a, b = a.flip(-1), b.flip(-1)
            d = model.dis_step(a, b, self.sync)
            g = model.gen_step(a, b, self.sync)
            self.iteration += 1
            self.seconds = base + time.perf_counter() - t0
            it = self.iteration
            metrics = {"iteration": it, "seconds": self.seconds, "dis": d, **g}
            if it % 50 == 0 or it == 1:
                self.history.append(metrics)
                if log and it % 200 == 0:
                    log(f"iter {it}: gen {g['total']:.2f} (recon {g['recon']:.3f}, cycle {g['cycle']:.3f}, gan {g['gan']:.3f}) dis {d:.3f}")
        if self.agree is not None and self.agree(self.seconds >= cfg.max_seconds):
            self.seconds = max(self.seconds, cfg.max_seconds)  # all workers see the same `done`
        return metrics or {"iteration": self.iteration, "seconds": self.seconds}

    def result(self) -> tuple[UNIT, list[dict[str, float]]]:
        """(model in eval mode, history ending with the final iteration count and seconds)."""
        self.model.eval()
        return self.model, [*self.history, {"iteration": self.iteration, "seconds": self.seconds}]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (tensors, numbers, strings: ``torch.load(weights_only=True)`` reads it)."""
        return {
            "format": STATE_FORMAT, "config": to_dict(self.cfg), "model": self.model.state_dict(),
            "opt_gen": self.model.opt_gen.state_dict(), "opt_dis": self.model.opt_dis.state_dict(),
            "iteration": self.iteration, "seconds": self.seconds, "history": self.history, "resumes": self.resumes,
        }

    def load_state_dict(self, state: dict[str, Any], name: str = "state") -> None:
        """Continue from ``state``; only the stopping rule (iterations, max_seconds) may differ."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise DataError(f"{name}: not a UNIT training state")
        free = ("iterations", "max_seconds")
        mine = {k: v for k, v in to_dict(self.cfg).items() if k not in free}
        theirs = {k: v for k, v in dict(state["config"]).items() if k not in free}
        if mine != theirs:
            diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            raise DataError(f"{name}: trained with a different config ({', '.join(diff)} differ); use another output folder")
        self.model.load_state_dict(state["model"])
        self.model.opt_gen.load_state_dict(state["opt_gen"])
        self.model.opt_dis.load_state_dict(state["opt_dis"])
        self.iteration, self.seconds = int(state["iteration"]), float(state["seconds"])
        self.history = [dict(h) for h in state["history"]]
        self.resumes = [int(r) for r in state["resumes"]]
        if self.iteration and not self.done:
            self.resumes.append(self.iteration)


def save_run_state(folder: str, state: dict[str, Any]) -> None:
    """Write ``state.pt`` with its sha256 (``state.sha256`` first, so a half-written pair is caught)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    storage.write_bytes(storage.join(folder, "state.sha256"), hashlib.sha256(data).hexdigest().encode())
    storage.write_bytes(storage.join(folder, "state.pt"), data)


def load_run_state(folder: str) -> dict[str, Any]:
    """Read a state written by :func:`save_run_state`; a corrupt or foreign one is a DataError."""
    uri = storage.join(folder, "state.pt")
    data = storage.read_bytes(uri)
    if storage.read_bytes(storage.join(folder, "state.sha256")).decode().strip() != hashlib.sha256(data).hexdigest():
        raise DataError(f"{uri}: corrupt checkpoint (sha256 differs from state.sha256)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise DataError(f"{uri}: cannot load ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DataError(f"{uri}: not a UNIT training state")
    return state


def latest_run_state(out: str, log: Callable[[str], None] | None = None, skip: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """(folder, state) of the newest round checkpoint under ``out`` that reads back intact, or None
    when there is none. A corrupt newer one is reported through ``log`` and passed over; when every
    one is corrupt that is an error (starting again silently would discard the run)."""
    names = sorted((n for n in storage.listdir(out) if n.startswith(ROUND_PREFIX)), reverse=True)
    bad = []
    for n in names:
        uri = storage.join(out, n)
        if uri == skip or not storage.exists(storage.join(uri, "state.pt")):
            continue
        try:
            return uri, load_run_state(uri)
        except (DataError, RbcrayError) as e:
            bad.append(uri)
            if log:
                log(f"warning: {e}; trying the previous checkpoint")
    if bad:
        raise DataError(f"{out}: no intact UNIT checkpoint ({len(bad)} corrupt: {', '.join(bad)}); move them away to start again")
    return None


def train_unit(
    normal: CellCrops, rare: CellCrops, cfg: UNITTrainConfig, log: Callable[[str], None] | None = None
) -> tuple[UNIT, list[dict[str, float]]]:
    """Train UNIT with A = ``normal`` crops and B = ``rare`` crops in this process; returns (model in eval mode, history)."""
    run = UNITRun(normal, rare, cfg)
    while not run.done:
        run.run_round(log)
    return run.result()


@torch.no_grad()
def translate_crops(model: UNIT, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    """Translate crops A -> B; returns uint8 (N, 4, S, S) with the source cell's mask kept."""
    out = crops.copy()
    for i in range(0, len(crops), batch):
        out[i : i + batch, :3] = to_uint8(model.translate(to_rgb_tensor(crops[i : i + batch]), "b"))
    return out


def score_translations(classifier: MorphologyNet, target: int, normal: np.ndarray, translated: np.ndarray, rare: np.ndarray) -> dict[str, np.ndarray]:
    """p(target) of real normal cells, their translations and real target-class cells."""
    return {
        "real_normal": predict_proba(classifier, normal)[:, target],
        "translated": predict_proba(classifier, translated)[:, target],
        "real_target": predict_proba(classifier, rare)[:, target],
    }


def acceptance_table(scores: dict[str, np.ndarray], thresholds: tuple[float, ...], n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Share of each group with p(target) >= t, with 95% bootstrap intervals (cells resampled)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in thresholds:
        row: dict[str, Any] = {"t": float(t)}
        for k, p in scores.items():
            keep = (p >= t).astype(float)
            reps = keep[rng.integers(0, len(keep), (n_boot, len(keep)))].mean(1) if len(keep) else np.array([np.nan])
            row[k] = float(keep.mean()) if len(keep) else float("nan")
            row[k + "_ci"] = [float(v) for v in np.quantile(reps, [0.025, 0.975])]
        rows.append(row)
    return rows


def save_unit(
    out: str | Path,
    model: UNIT,
    cfg: UNITTrainConfig,
    provenance: dict[str, Any],
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    write_more: Callable[[Path], None] | None = None,
    run_folder: bool = False,
) -> str:
    """Write ``unit.pt`` (all weights), anything ``write_more(folder)`` adds, then ``unit.json``.

    A new local folder is staged and renamed into place. ``out`` on an object store, or a
    ``run_folder`` that already holds a run's round checkpoints (Ray Train), gets the files one by
    one, each replaced atomically, ``unit.json`` (the manifest) last.
    """
    meta = {"format": CHECKPOINT_FORMAT, "model": "unit", "config": to_dict(cfg), "provenance": provenance, **(extra or {})}
    if not run_folder and not storage.is_remote(str(out)):
        with staged_dir(out, overwrite=overwrite) as tmp:
            torch.save(model.state_dict(), tmp / "unit.pt")
            if write_more is not None:
                write_more(tmp)
            write_json(tmp / "unit.json", meta)
        return str(out)
    with tempfile.TemporaryDirectory(prefix="rbcray-unit-") as d:
        tmp = Path(d)
        torch.save(model.state_dict(), tmp / "unit.pt")
        if write_more is not None:
            write_more(tmp)
        write_json(tmp / "unit.json", meta)
        names = sorted(f.name for f in tmp.iterdir() if f.is_file() and f.name != "unit.json") + ["unit.json"]
        for n in names:
            storage.write_bytes(storage.join(str(out), n), (tmp / n).read_bytes())
    return str(out)


def load_unit(path: str | Path) -> tuple[UNIT, UNITTrainConfig, dict[str, Any]]:
    """Read a translator folder (local or object-store URI) -> (model in eval mode, config, unit.json)."""
    p = str(path).rstrip("/")
    js, pt = storage.join(p, "unit.json"), storage.join(p, "unit.pt")
    if not storage.exists(js) or not storage.exists(pt):
        raise DataError(f"{p}: not a UNIT checkpoint (needs unit.json and unit.pt)")
    try:
        meta = json.loads(storage.read_bytes(js))
    except ValueError as e:
        raise DataError(f"{js}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{js}: not a UNIT checkpoint")
    cfg = from_dict(UNITTrainConfig, meta["config"], where=js)
    model: UNIT = create_model("unit", **to_dict(cfg.model))
    try:
        model.load_state_dict(torch.load(io.BytesIO(storage.read_bytes(pt)), map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise DataError(f"{pt}: cannot load ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    model.eval()
    return model, cfg, meta


def figure(path: str | Path, normal: np.ndarray, translated: np.ndarray, rare: np.ndarray, p_trans: np.ndarray, title: str, k: int = 10) -> Path:
    """PNG: a row of real normal cells, their translations (with p(c)) and a row of real class-c cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(k, len(normal), len(rare))
    fig, axes = plt.subplots(3, k, figsize=(1.3 * k, 4.4))
    rows = (("real normal", normal), ("translated", translated), ("real " + title, rare))
    for r, (name, arr) in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(arr[c, :3].transpose(1, 2, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 1:
                ax.set_title(f"p={p_trans[c]:.2f}", fontsize=7)
    fig.suptitle(f"UNIT normal -> {title}: real vs translated cells (held-out images)", fontsize=9)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
