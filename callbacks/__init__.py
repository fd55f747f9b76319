"""bluesky callbacks of the digital twin: installed as ``bluesky_digitwin.callbacks``.

:class:`TwinCallback` buffers the documents of a RunEngine and keeps a
:class:`~bluesky_digitwin.twin.DigitalTwin` trained on them in the background, as its
:class:`RetrainPolicy` says; :class:`TwinStatus` is what ``cb.status`` reports.
"""

from bluesky_digitwin.callbacks.twin import RetrainPolicy, TwinCallback, TwinStatus

__all__ = ["RetrainPolicy", "TwinCallback", "TwinStatus"]
