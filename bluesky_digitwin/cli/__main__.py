"""``python -m bluesky_digitwin.cli``: the ``digitwin`` command."""

import sys

from bluesky_digitwin.cli import main

sys.exit(main())
