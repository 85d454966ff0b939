"""``ray job submit`` entry point of the evaluation sweep (Bailo et al. Table 2, issue 6).

    ray job submit --working-dir . -- python jobs/evaluate.py --config rbcray/configs/sweep-paper.yaml \
        --out s3://BUCKET/rbcray/eval-paper

Inside a job ``RAY_ADDRESS`` is set, so the sweep joins the cluster; the arguments are those of
``rbcray evaluate``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# 'ray job submit --working-dir .' runs this file from the uploaded checkout: use its rbcray
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(args: Sequence[str] | None = None) -> int:
    """Run ``rbcray evaluate`` with ``args`` (default: the command line)."""
    from rbcray.cli import main as cli_main

    return cli_main(["evaluate", *(sys.argv[1:] if args is None else args)])


if __name__ == "__main__":
    sys.exit(main())
