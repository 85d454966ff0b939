"""Ray job: generate a synthetic dataset on the cluster (issue 5), a thin wrapper over ``rbcray generate``.

    ray job submit --working-dir . -- python jobs/generate.py \
        --checkpoint s3://bucket/runs/p2p --shapes s3://bucket/chula/shapes.parquet \
        --stats s3://bucket/chula/stats.json --num-samples 1000000 --out s3://bucket/synth/v1

Inside ``ray job submit`` RAY_ADDRESS is set, so rbcray joins that cluster: mask actors go to the
CPU workers, one generator actor per GPU. Inputs and ``--out`` should be object storage or a path
shared by every node. Re-submitting the same command writes only the shards still missing.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    if (root / "rbcray" / "__init__.py").exists():  # the shipped working dir wins over an installed rbcray
        sys.path.insert(0, str(root))
    from rbcray.cli import main as cli_main

    return cli_main(["generate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
