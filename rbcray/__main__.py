"""``python -m rbcray`` runs the CLI."""

import sys

from rbcray.cli import main

sys.exit(main())
