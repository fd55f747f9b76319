"""``python -m bluesky_digitwin.cli``: the ``digitwin`` command."""

from bluesky_digitwin.cli import command

command()
