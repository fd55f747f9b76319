"""bluesky callbacks of the digital twin: installed as ``bluesky_digitwin.callbacks``.

:class:`TwinCallback` buffers the documents of a RunEngine and keeps a
:class:`~bluesky_digitwin.twin.DigitalTwin` trained on them in the background, as its
:class:`RetrainPolicy` says; :class:`TwinStatus` is what ``cb.status`` reports.
:class:`LiveTwinPlot` draws the measurement live beside the newest twin's simulation of it
(with its uncertainty) and the step or line the twin suggests, like bluesky's ``LivePlot``
(matplotlib, an optional dependency: ``pip install "bluesky-digitwin[plot]"``); its ``mode``
picks the layout, :class:`LiveTwinLines` (``"lines"``) or :class:`LiveTwinMap` (``"map"``).
"""

# Importing the layouts defines them, and so tells LiveTwinPlot which class each mode names.
from bluesky_digitwin.callbacks.live_lines import LiveTwinLines
from bluesky_digitwin.callbacks.live_map import LiveTwinMap
from bluesky_digitwin.callbacks.plot import LiveTwinPlot
from bluesky_digitwin.callbacks.twin import RetrainPolicy, TwinCallback, TwinStatus

__all__ = [
    "LiveTwinLines",
    "LiveTwinMap",
    "LiveTwinPlot",
    "RetrainPolicy",
    "TwinCallback",
    "TwinStatus",
]
