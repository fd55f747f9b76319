"""Simulated instruments as ophyd-async devices: the same instruments, the same materials.

The ophyd-async counterparts of :mod:`bluesky_digitwin.sim.devices`, for beamlines whose
devices are ophyd-async (Diamond, more and more of NSLS-II). Each is a
:class:`~ophyd_async.core.StandardReadable` with two axes, each an
:class:`ophyd_async.sim.SimMotor` (moves at once; readback with units), and one soft reading
that, when triggered, measures the material at the axes' readbacks through a
:class:`~bluesky_digitwin.sim.instruments.MaterialProbe`, exactly as the ophyd device does: the
physics is :mod:`bluesky_digitwin.sim.materials`, in one copy.

- :class:`AsyncMagnetometer`: axes ``temperature`` (K) and ``field`` (Oe), reading ``moment``
  (emu) of a :class:`~bluesky_digitwin.sim.FirstOrderMagnet` or
  :class:`~bluesky_digitwin.sim.MovingTransitionMagnet`;
- :class:`AsyncResistanceBridge`: axes ``temperature`` (K) and ``field`` (Oe), reading
  ``resistance`` (ohm) of a :class:`~bluesky_digitwin.sim.SuperconductingFilm`;
- :class:`AsyncArpesDetector`: axes ``theta`` and ``phi`` (deg), reading ``intensity``
  (counts) of an :class:`~bluesky_digitwin.sim.ArpesMap`.

Make them the ophyd-async way, in :func:`~ophyd_async.core.init_devices` (which names each
after its variable and connects it), after the RunEngine (whose event loop they use)::

    RE = RunEngine()
    with init_devices():
        amag = AsyncMagnetometer(noise=1e-6, seed=0)
    RE(bps.mv(amag.field, 5000))
    RE(scan([amag], amag.temperature, 10, 60, 51))  # amag-temperature, amag-field, amag-moment

Data keys are ophyd-async's ``<device>-<child>``, with dashes: ``amag-temperature``,
``amag-field`` (the motors' readbacks) and ``amag-moment``. As with the ophyd instruments, the
device's ``hints`` name the reading only, so that bluesky's callbacks (and a
:class:`~bluesky_digitwin.buffer.ScanBuffer` without names) see what it measures.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import numpy as np
from bluesky.protocols import Hints
from ophyd_async.core import (
    AsyncStatus,
    SignalR,
    StandardReadable,
    soft_signal_r_and_setter,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.sim import SimMotor

from bluesky_digitwin.sim.instruments import (
    ARPES_DETECTOR,
    MAGNETOMETER,
    RESISTANCE_BRIDGE,
    AxisSpec,
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

__all__ = ["AsyncArpesDetector", "AsyncMagnetometer", "AsyncResistanceBridge"]


def _axis(axis: AxisSpec) -> SimMotor:
    """An instant simulated motor for one axis of an instrument spec."""
    return SimMotor(instant=True, initial_value=axis.start, units=axis.units)


class _AsyncInstrument(StandardReadable):
    """Two motors and one triggered reading of a material; subclasses make the children.

    A subclass makes its two axes (:func:`_axis`) as readable children and its reading with
    :meth:`_make_reading` as a hinted signal, named as its ``_spec`` says, then calls this
    ``__init__``. (Children are found by name, never kept under a second attribute: ophyd-async
    would take that for a second child.)
    """

    _spec: ClassVar[InstrumentSpec]

    def __init__(
        self,
        material: Any,
        *,
        noise: float | bool | None,
        seconds_per_point: float,
        seed: int | np.random.Generator | None,
        name: str,
    ) -> None:
        self._probe = MaterialProbe(self._spec, material, noise=noise, seed=seed)
        self.material = self._probe.material
        self.seconds_per_point = seconds_per_point
        # Start from the noiseless value so that creating a device draws no random numbers.
        self._set_reading(self._probe.noiseless(*(axis.start for axis in self._spec.axes)))
        super().__init__(name=name)

    def _make_reading(self) -> SignalR[float]:
        """The soft reading (read-only from outside) and, kept here, its setter."""
        signal, self._set_reading = soft_signal_r_and_setter(
            float, units=self._spec.units, precision=self._spec.precision
        )
        return signal

    @property
    def hints(self) -> Hints:
        """The reading's field only (the motors would add their readbacks)."""
        return {"fields": [getattr(self, self._spec.reading).name]}

    @property
    def seconds_per_point(self) -> float:
        """Seconds each trigger takes (0: immediate)."""
        return self._seconds_per_point

    @seconds_per_point.setter
    def seconds_per_point(self, seconds: float) -> None:
        self._seconds_per_point = check_seconds_per_point(seconds)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Measure at the axes' current readbacks; a failing model fails the status."""
        motors = [getattr(self, axis.name) for axis in self._spec.axes]
        a, b = await asyncio.gather(*(motor.user_readback.get_value() for motor in motors))
        if self._seconds_per_point:
            await asyncio.sleep(self._seconds_per_point)
        self._set_reading(self._probe.measure(a, b))


class AsyncMagnetometer(_AsyncInstrument):
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
        Device name ("" to let :func:`~ophyd_async.core.init_devices` name it); the data keys
        are ``<name>-temperature``, ``<name>-field``, ``<name>-moment``.

    Attributes
    ----------
    temperature : ophyd_async.sim.SimMotor
        Sample temperature, K (starts at 300 K).
    field : ophyd_async.sim.SimMotor
        Applied magnetic field, Oe (starts at 0 Oe).
    moment : ophyd_async.core.SignalR
        Magnetic moment, emu; the reading.
    """

    _spec = MAGNETOMETER

    def __init__(
        self,
        material: FirstOrderMagnet | MovingTransitionMagnet | None = None,
        *,
        noise: float | None = None,
        seconds_per_point: float = 0.0,
        seed: int | np.random.Generator | None = None,
        name: str = "",
    ) -> None:
        with self.add_children_as_readables():
            self.temperature = _axis(MAGNETOMETER.axes[0])
            self.field = _axis(MAGNETOMETER.axes[1])
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.moment = self._make_reading()
        super().__init__(
            material,
            noise=noise,
            seconds_per_point=seconds_per_point,
            seed=seed,
            name=name,
        )


class AsyncResistanceBridge(_AsyncInstrument):
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
        Device name; the data keys are ``<name>-temperature``, ``<name>-field``,
        ``<name>-resistance``.

    Attributes
    ----------
    temperature : ophyd_async.sim.SimMotor
        Sample temperature, K (starts at 10 K).
    field : ophyd_async.sim.SimMotor
        Applied magnetic field, Oe (starts at 0 Oe).
    resistance : ophyd_async.core.SignalR
        Resistance, ohm; the reading.
    """

    _spec = RESISTANCE_BRIDGE

    def __init__(
        self,
        material: SuperconductingFilm | None = None,
        *,
        noise: float | None = None,
        seconds_per_point: float = 0.0,
        seed: int | np.random.Generator | None = None,
        name: str = "",
    ) -> None:
        with self.add_children_as_readables():
            self.temperature = _axis(RESISTANCE_BRIDGE.axes[0])
            self.field = _axis(RESISTANCE_BRIDGE.axes[1])
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.resistance = self._make_reading()
        super().__init__(
            material,
            noise=noise,
            seconds_per_point=seconds_per_point,
            seed=seed,
            name=name,
        )


class AsyncArpesDetector(_AsyncInstrument):
    """A photoemission analyser over two emission angles, counting from an ARPES map.

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
        Device name; the data keys are ``<name>-theta``, ``<name>-phi``,
        ``<name>-intensity``.

    Attributes
    ----------
    theta : ophyd_async.sim.SimMotor
        Primary (analyser slit) angle, deg (starts at 0).
    phi : ophyd_async.sim.SimMotor
        Secondary (deflector) angle, deg (starts at 0).
    intensity : ophyd_async.core.SignalR
        Photoemission intensity, counts; the reading.
    """

    _spec = ARPES_DETECTOR

    def __init__(
        self,
        material: ArpesMap | None = None,
        *,
        noise: bool | None = None,
        seconds_per_point: float = 0.0,
        seed: int | np.random.Generator | None = None,
        name: str = "",
    ) -> None:
        with self.add_children_as_readables():
            self.theta = _axis(ARPES_DETECTOR.axes[0])
            self.phi = _axis(ARPES_DETECTOR.axes[1])
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.intensity = self._make_reading()
        super().__init__(
            material,
            noise=noise,
            seconds_per_point=seconds_per_point,
            seed=seed,
            name=name,
        )
