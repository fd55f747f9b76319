"""Twin-guided bluesky plans: installed as ``bluesky_digitwin.plans``."""
