"""``python -m infoenh`` runs the ``infoenh`` command line (see :mod:`infoenh.cli`)."""
import sys

from .cli import main

sys.exit(main())
