"""bluesky callbacks of the digital twin: installed as ``bluesky_digitwin.callbacks``."""
