"""Print a minutes-scale version of sweep-study.yaml for the smoke run of run_study.sh --tiny.

    python benchmarks/study_tiny_config.py rbcray/configs/sweep-study.yaml OUT > OUT/sweep-study-tiny.yaml

Same datasets (paths moved under OUT), models and regimes; fewer images, steps and resamples.
"""

from __future__ import annotations

import sys

import yaml


def main(src: str, out: str) -> int:
    cfg = yaml.safe_load(open(src))
    cfg["name"] = "rbcray-study-tiny"
    for d in cfg["datasets"]:
        for k in ("real", "synthetic", "splits"):
            if isinstance(d.get(k), str):
                d[k] = d[k].replace("study-output/", f"{out}/")
        d["n_test"], d["n_val"] = 6, 3
    for m in cfg["models"]:
        m["train"].update(epochs=2, steps_per_epoch=2, checkpoint_every=1, val_every=1)
    cfg.update(n_real=4, total=8, bootstrap=50, rd_subsets=[0, 1, 2],
               learning_curve={**cfg["learning_curve"], "sizes": [2, 4, 8]}, realism={"max_images": 8, "epochs": 1})
    yaml.safe_dump(cfg, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
