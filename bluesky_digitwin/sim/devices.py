"""Simulated instruments: ophyd devices that measure the simulated materials.

Each instrument is an :class:`ophyd.Device` with two movable axes (:class:`SimAxis`, a
:class:`ophyd.sim.SynAxis` whose data keys carry units) and one detector signal
(:class:`SimReading`, a :class:`ophyd.sim.SynSignal` with units) that, when triggered, measures
the material at the axes' current readbacks. Everything is synchronous ophyd: a bluesky
RunEngine drives them like real hardware, and tests need no event loop.

- :class:`Magnetometer`: axes ``temperature`` (K) and ``field`` (Oe), reading ``moment`` (emu)
  of a :class:`~bluesky_digitwin.sim.FirstOrderMagnet` or
  :class:`~bluesky_digitwin.sim.MovingTransitionMagnet`;
- :class:`ResistanceBridge`: axes ``temperature`` (K) and ``field`` (Oe), reading ``resistance``
  (ohm) of a :class:`~bluesky_digitwin.sim.SuperconductingFilm`;
- :class:`ArpesDetector`: axes ``theta`` and ``phi`` (deg), reading ``intensity`` (counts) of an
  :class:`~bluesky_digitwin.sim.ArpesMap`.

Data keys are ``<device name>_<component>`` as usual in ophyd (``mag_temperature``,
``mag_field``, ``mag_moment``); their ``source`` is ``SIM:...``. Scan an axis with the whole
device as detector, and every event holds both axes and the reading::

    mag = Magnetometer(FirstOrderMagnet(), noise=1e-6, seed=0, name="mag")
    RE(bps.mv(mag.field, 5000))
    RE(scan([mag], mag.temperature, 10, 60, 51))  # mag_temperature, mag_field, mag_moment

or give only the reading (``scan([mag.moment], mag.temperature, ...)``) and record the fixed
axis elsewhere (a baseline, or the plan's metadata).

``seconds_per_point`` delays each trigger so that a demo paces like an instrument; at 0 (the
default) a trigger completes at once, in the caller's thread.

An instrument's ``hints`` name its reading only: read as a whole (``scan([mag], ...)``), it
tells bluesky's callbacks (and a :class:`~bluesky_digitwin.buffer.ScanBuffer` without names)
that the moment is what it measures, the axes being what is scanned or held.

The same instruments as ophyd-async devices are in :mod:`bluesky_digitwin.sim.async_devices`;
both measure through :class:`~bluesky_digitwin.sim.instruments.MaterialProbe`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device
from ophyd.sim import SynAxis, SynSignal
from ophyd.status import DeviceStatus, StatusBase

from bluesky_digitwin.sim.instruments import (
    ARPES_DETECTOR,
    MAGNETOMETER,
    RESISTANCE_BRIDGE,
    InstrumentSpec,
    MaterialProbe,
    check_seconds_per_point,
)
from bluesky_digitwin.sim.materials import (
    ArpesMap,
    FirstOrderMagnet,
    MovingTransitionMagnet,
    SuperconductingFilm,
)

__all__ = [
    "ArpesDetector",
    "Magnetometer",
    "ResistanceBridge",
    "SimAxis",
    "SimReading",
]


class SimAxis(SynAxis):
    """A :class:`ophyd.sim.SynAxis` whose readback and setpoint data keys carry ``units``.

    ``SynAxis`` keeps its engineering unit in ``egu`` but leaves it out of ``describe()``; the
    event descriptor is where bluesky consumers (and :class:`bluesky_digitwin.buffer.ScanBuffer`)
    look for units, so it is added there.
    """

    def set(self, value: float) -> StatusBase:
        # Store floats only, so that the setpoint's dtype ("number") does not depend on
        # whether a plan moved to 5000 or 5000.0.
        return super().set(float(value))

    def describe(self) -> dict[str, dict[str, Any]]:
        description = super().describe()
        for data_key in description.values():
            data_key["units"] = self.egu
        return description


class SimReading(SynSignal):
    """A :class:`ophyd.sim.SynSignal` with units that measures when triggered.

    Parameters
    ----------
    func
        Called on trigger; returns the new value.
    units
        Unit written to the data key (``describe()[name]["units"]``).
    exposure_time
        Seconds a trigger takes. At 0 the value is computed in the caller's thread and the
        returned status is already finished.
    **kwargs
        Passed to :class:`ophyd.sim.SynSignal` (``name``, ``parent``, ``kind``, ...).
    """

    def __init__(self, func=None, *, units: str = "", **kwargs: Any) -> None:
        super().__init__(func, **kwargs)
        self.units = units

    def describe(self) -> dict[str, dict[str, Any]]:
        description = super().describe()
        for data_key in description.values():
            data_key["units"] = self.units
        return description

    def trigger(self) -> StatusBase:
        # Like SynSignal.trigger, except that a failing measurement (e.g. a temperature <= 0 K,
        # which the models reject) fails the status: bluesky then raises, where SynSignal's
        # worker thread would die and leave the RunEngine waiting for ever.
        status = DeviceStatus(device=self)
        delay = self.exposure_time

        def measure() -> None:
            if delay:
                time.sleep(delay)
            try:
                self.put(self._func())
            except Exception as exc:
                status.set_exception(exc)
            else:
                status.set_finished()

        if delay:
            threading.Thread(target=measure, daemon=True).start()
        else:
            measure()
        return status


class _Instrument(Device):
    """Two axes and one reading of a material model; subclasses declare the components.

    Subclasses set ``_spec`` (an :class:`~bluesky_digitwin.sim.instruments.InstrumentSpec`:
    the attribute names of the two axes, in the order the material's methods take them, and
    of the reading) and declare components of those names.
    """

    _spec: ClassVar[InstrumentSpec]

    def __init__(
        self,
        material: Any,
        *,
        noise: float | bool | None = None,
        seconds_per_point: float = 0.0,
        seed: int | np.random.Generator | None = None,
        name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self._probe = MaterialProbe(self._spec, material, noise=noise, seed=seed)
        self.material = self._probe.material
        self.seconds_per_point = seconds_per_point
        reading = getattr(self, self._spec.reading)
        reading.sim_set_func(self._measure)
        # Start from the noiseless value so that creating a device draws no random numbers.
        reading.put(self._probe.noiseless(*self._positions()))

    @property
    def hints(self) -> dict[str, list[str]]:
        """The reading's field only (ophyd would add the axes' readbacks)."""
        return {"fields": [getattr(self, self._spec.reading).name]}

    @property
    def seconds_per_point(self) -> float:
        """Seconds each trigger of the reading takes (0: immediate)."""
        return float(getattr(self, self._spec.reading).exposure_time)

    @seconds_per_point.setter
    def seconds_per_point(self, seconds: float) -> None:
        getattr(self, self._spec.reading).exposure_time = check_seconds_per_point(seconds)

    def trigger(self) -> StatusBase:
        """Measure at the current axis readbacks (so that ``count([device])`` works)."""
        return getattr(self, self._spec.reading).trigger()

    def _positions(self) -> tuple[float, float]:
        first, second = self._spec.axes
        return getattr(self, first.name).position, getattr(self, second.name).position

    def _measure(self) -> float:
        return self._probe.measure(*self._positions())


def _axis(axis: Any) -> Cpt:
    """An ophyd component for one axis of an instrument spec."""
    extra = {} if axis.precision is None else {"precision": axis.precision}
    return Cpt(SimAxis, value=axis.start, egu=axis.units, **extra)


def _reading(spec: InstrumentSpec) -> Cpt:
    """The ophyd component of an instrument's reading (hinted: it is what is measured)."""
    return Cpt(SimReading, units=spec.units, precision=spec.precision, kind="hinted")


class Magnetometer(_Instrument):
    """A magnetometer (think SQUID/VSM) measuring the moment of a simulated magnet.

    Parameters
    ----------
    material
        A :class:`~bluesky_digitwin.sim.FirstOrderMagnet` (default) or
        :class:`~bluesky_digitwin.sim.MovingTransitionMagnet`.
    noise
        Standard deviation of Gaussian noise on the moment, emu; None keeps the material's
        ``noise_emu``. The device's ``material`` holds the effective value.
    seconds_per_point
        Seconds each measurement takes.
    seed
        Seed (or Generator) of the noise.
    name
        Device name; the data keys are ``<name>_temperature``, ``<name>_field``,
        ``<name>_moment``.

    Attributes
    ----------
    temperature : SimAxis
        Sample temperature, K (starts at 300 K).
    field : SimAxis
        Applied magnetic field, Oe (starts at 0 Oe).
    moment : SimReading
        Magnetic moment, emu; the detector.
    """

    _spec = MAGNETOMETER
    temperature = _axis(MAGNETOMETER.axes[0])
    field = _axis(MAGNETOMETER.axes[1])
    moment = _reading(MAGNETOMETER)

    def __init__(
        self,
        material: FirstOrderMagnet | MovingTransitionMagnet | None = None,
        *,
        noise: float | None = None,
        seconds_per_point: float = 0.0,
        seed: int | np.random.Generator | None = None,
        name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            material,
            noise=noise,
            seconds_per_point=seconds_per_point,
            seed=seed,
            name=name,
            **kwargs,
        )


class ResistanceBridge(_Instrument):
    """A resistance bridge in a cryostat with a magnet, measuring a superconducting film.

    Parameters
    ----------
    material
        A :class:`~bluesky_digitwin.sim.SuperconductingFilm` (default: the default film, whose
        readings carry 2 mOhm of Gaussian noise).
    noise
        Standard deviation of Gaussian noise, ohm; None keeps the film's ``noise_ohm``.
    seconds_per_point
        Seconds each measurement takes.
    seed
        Seed (or Generator) of the noise.
    name
        Device name; the data keys are ``<name>_temperature``, ``<name>_field``,
        ``<name>_resistance``.

    Attributes
    ----------
    temperature : SimAxis
        Sample temperature, K (starts at 10 K).
    field : SimAxis
        Applied magnetic field, Oe (starts at 0 Oe).
    resistance : SimReading
        Resistance, ohm; the detector.
    """

    _spec = RESISTANCE_BRIDGE
    temperature = _axis(RESISTANCE_BRIDGE.axes[0])
    field = _axis(RESISTANCE_BRIDGE.axes[1])
    resistance = _reading(RESISTANCE_BRIDGE)

    def __init__(
        self,
        material: SuperconductingFilm | None = None,
        *,
        noise: float | None = None,
        seconds_per_point: float = 0.0,
        seed: int | np.random.Generator | None = None,
        name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            material,
            noise=noise,
            seconds_per_point=seconds_per_point,
            seed=seed,
            name=name,
            **kwargs,
        )


class ArpesDetector(_Instrument):
    """A photoemission analyser over two emission angles, counting from an ARPES map.

    The counts include the map's detector sensitivity, which falls towards both edges of the
    primary angle ``theta``, and its detection limit (counts below it read 0).

    Parameters
    ----------
    material
        An :class:`~bluesky_digitwin.sim.ArpesMap` (default: ``ArpesMap()``).
    noise
        Poisson counting noise on (True) or off (False); None keeps the map's
        ``poisson_noise``.
    seconds_per_point
        Seconds each measurement takes.
    seed
        Seed (or Generator) of the counting noise.
    name
        Device name; the data keys are ``<name>_theta``, ``<name>_phi``, ``<name>_intensity``.

    Attributes
    ----------
    theta : SimAxis
        Primary (analyser slit) angle, deg (starts at 0).
    phi : SimAxis
        Secondary (deflector) angle, deg (starts at 0).
    intensity : SimReading
        Photoemission intensity, counts; the detector.
    """

    _spec = ARPES_DETECTOR
    theta = _axis(ARPES_DETECTOR.axes[0])
    phi = _axis(ARPES_DETECTOR.axes[1])
    intensity = _reading(ARPES_DETECTOR)

    def __init__(
        self,
        material: ArpesMap | None = None,
        *,
        noise: bool | None = None,
        seconds_per_point: float = 0.0,
        seed: int | np.random.Generator | None = None,
        name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            material,
            noise=noise,
            seconds_per_point=seconds_per_point,
            seed=seed,
            name=name,
            **kwargs,
        )
