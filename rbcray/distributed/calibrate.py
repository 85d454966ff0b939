"""``rbcray calibrate`` on Ray Tune: a resumable random search of the mask placement parameters.

The first trials are the paper's setting (:data:`PAPER_POINTS`); each further trial draws one
parameter set from :data:`rbcray.synth.calibrate.SPACE` (Tune's ``BasicVariantGenerator``,
seeded: the same seed draws the same sets), synthesizes ``n_masks``
masks with it and scores them against the real train images' arrangement statistics
(:func:`rbcray.synth.calibrate.score`). Trials run concurrently, one CPU each; Tune prints its
progress table. The run lives in ``work_dir`` (Tune's experiment folder): calling again with the
same folder resumes it (finished trials are kept, unfinished ones re-run) instead of starting over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _trial(params: dict[str, Any], *, bank: Any, base: dict[str, Any], real: dict[str, np.ndarray], seed: int, n_masks: int) -> None:
    import cv2
    from ray import tune

    from rbcray.synth.calibrate import config_for, score
    from rbcray.synth.config import SynthConfig

    cv2.setNumThreads(1)
    cfg = config_for(SynthConfig.from_dict(base), params)
    res = score(bank, cfg, real, seed, n_masks)
    tune.report({"objective": res["objective"], **{f"ks_{k}": v for k, v in res["ks"].items()}})


#: tried first: the paper's setting (both readings of the kernel inside its disc, no contact, the
#: real count), so a search never returns something worse on its own images than the paper's rule
PAPER_POINTS = (
    {"n_init": 20, "kernel_scale": 1.0, "kernel_inside": 0, "kernel_inner": 0.0, "contact_prob": 0.0, "contact_overlap": 0.0,
     "count_scale": 1.0, "spread_scale": 1.0},
    {"n_init": 20, "kernel_scale": 1.0, "kernel_inside": 1, "kernel_inner": 0.0, "contact_prob": 0.0, "contact_overlap": 0.0,
     "count_scale": 1.0, "spread_scale": 1.0},
)


def param_space() -> dict[str, Any]:
    """:data:`rbcray.synth.calibrate.SPACE` as Tune search-space objects."""
    from ray import tune

    from rbcray.synth.calibrate import SPACE

    out: dict[str, Any] = {}
    for k, (kind, lo, hi) in SPACE.items():
        if kind in ("int", "choice"):
            out[k] = tune.randint(int(lo), int(hi) + 1)
        else:
            out[k] = tune.uniform(lo, hi)
    return out


def tune_search(bank: Any, base: dict[str, Any], real: dict[str, np.ndarray], *, trials: int, n_masks: int, seed: int,
                work_dir: str | Path, concurrency: int = 2, verbose: int = 1) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Run (or resume) the search; returns (best parameter set, its metrics, trials finished).

    ``bank``: a loaded :class:`~rbcray.synth.shapes.ShapeBank` (shipped to the trials once, through
    the object store; see :func:`rbcray.synth.calibrate.calibration_bank`)."""
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # one progress table, not a box per trial result
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from rbcray.distributed.runtime import init_ray

    init_ray()
    work = Path(work_dir).resolve()
    trainable = tune.with_resources(
        tune.with_parameters(_trial, bank=bank, base=base, real=real, seed=seed, n_masks=n_masks),
        {"cpu": 1},
    )
    path = str(work / "search")
    if tune.Tuner.can_restore(path):
        print(f"resuming the search in {path}", flush=True)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(),
            tune_config=tune.TuneConfig(
                metric="objective", mode="min", num_samples=trials,
                search_alg=BasicVariantGenerator(points_to_evaluate=[dict(p) for p in PAPER_POINTS][:trials],
                                                 max_concurrent=concurrency, random_state=seed),
            ),
            run_config=tune.RunConfig(name="search", storage_path=str(work), verbose=verbose),
        )
    results = tuner.fit()
    done = [r for r in results if r.metrics and "objective" in r.metrics]
    if not done:
        from rbcray.errors import RbcrayError

        errors = [str(r.error).splitlines()[-1] for r in results if r.error][:1]
        raise RbcrayError(f"calibration: no trial finished ({errors[0] if errors else 'no result'})")
    best = min(done, key=lambda r: (r.metrics["objective"], str(sorted(r.config.items()))))
    params = {k: best.config[k] for k in param_space()}
    return params, {k: v for k, v in best.metrics.items() if k == "objective" or k.startswith("ks_")}, len(done)
