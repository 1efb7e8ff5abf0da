"""``python -m AutoSegNetLib ...`` runs the command-line interface."""

import sys

from AutoSegNetLib.cli import main

sys.exit(main())
