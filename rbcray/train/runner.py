"""The plain (no Ray) training loop for any generator family.

The family comes from the config's type (:func:`rbcray.models.registry.family_of_config`); the
loop only calls the family's Trainer, export and log line (see :mod:`rbcray.models.translator`).
Output layout under ``out`` (a local folder or URI), the same for every family and for the Ray
Train path (:mod:`rbcray.distributed.train`): per-epoch sample grids in ``samples/``,
``checkpoints/epoch_NNNN/state.pt``, and finally ``model/``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rbcray import storage

EpochHook = Callable[[int, dict[str, Any]], None]


def train(
    cfg: Any,
    data: str | Path,
    out: str,
    *,
    log: Callable[[str], None] = print,
    on_epoch: EpochHook | None = None,
    export: bool = True,
    splits: Any = None,
    role: str | None = None,
    val: Any = None,
) -> dict[str, Any]:
    """Train in this process, resuming from ``out``'s latest checkpoint; returns a summary.

    Re-running with the same ``out`` continues after the last saved epoch; a finished run is not
    trained again (its model is exported if it is missing). With ``splits`` and ``role`` (e.g.
    ``"train"``) only that role's images are used; either way the images used are recorded as
    ``provenance`` in every checkpoint and in ``model.json``. ``val`` (a
    :class:`~rbcray.train.validate.ValSpec`) scores the model every ``val.every`` epochs and keeps
    the best in ``OUT/best``.
    """
    from rbcray.data.provenance import select_dataset
    from rbcray.models.pix2pixhd.checkpoint import save_state
    from rbcray.models.registry import family_of_config
    from rbcray.train.pix2pixhd import _prune, _upload_dir, checkpoints_uri, load_latest_state
    from rbcray.train.pix2pixhd_loop import open_dataset

    family = family_of_config(cfg)
    family.check(cfg)
    ds, prov = select_dataset(open_dataset(data), splits, role)
    storage.check_writable(out)
    trainer = family.trainer_class()(cfg, ds, provenance=prov)
    validator = None
    if val is not None:
        from rbcray.train.validate import Validator

        validator = Validator(val)
        validator.resume(out)
    found = load_latest_state(out, log)  # a corrupt newest checkpoint falls back to the previous one
    if found is not None:
        ck, state = found
        trainer.load_state_dict(state, name=ck)
        if trainer.epoch < cfg.total_epochs:
            trainer.resumes.append(trainer.epoch)
            log(f"resuming from {ck} (epoch {trainer.epoch}/{cfg.total_epochs})")
    t0 = time.perf_counter()
    while trainer.epoch < cfg.total_epochs:
        metrics = trainer.train_epoch()
        epoch = trainer.epoch
        log(family.metrics_line(epoch, cfg.total_epochs, metrics))
        storage.write_bytes(storage.join(out, "samples", f"epoch_{epoch:04d}.png"), trainer.sample_grid())
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.total_epochs:
            tmp = Path(tempfile.mkdtemp(prefix="rbcray-ckpt-"))
            try:
                save_state(tmp, trainer.state_dict())
                _upload_dir(tmp, storage.join(checkpoints_uri(out), f"epoch_{epoch:04d}"))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _prune(out, cfg.keep_checkpoints)
        if validator is not None:
            validator(trainer, family, out, epoch, cfg.total_epochs, log)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    summary: dict[str, Any] = {"epochs": trainer.epoch, "seconds": time.perf_counter() - t0, "history": trainer.history}
    if validator is not None:
        summary["val"] = validator.history
    if export:
        summary["model"] = family.export_fn()(trainer, out, log=log)
    return summary
