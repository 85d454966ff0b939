"""Ray job: train pix2pixHD on the cluster (issue 4), a thin wrapper over ``rbcray train``.

    ray job submit --working-dir . -- python jobs/train_pix2pixhd.py \
        --data /shared/datasets/chula --out s3://bucket/runs/p2p --config paper

Inside ``ray job submit`` RAY_ADDRESS is set, so rbcray joins that cluster; Ray Train then places
one worker per GPU. ``--data`` must be readable at the same path on every node (shared storage);
``--out`` should be object storage or a shared path (the job's working directory is temporary).
Every ``rbcray train`` option works; re-submitting the same command resumes the run.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    if (root / "rbcray" / "__init__.py").exists():  # the shipped working dir wins over an installed rbcray
        sys.path.insert(0, str(root))
    from rbcray.cli import main as cli_main

    print(f"rbcray from {sys.modules['rbcray'].__file__}", flush=True)

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
