"""Simulated materials for the four cases of Terashima et al. (Digital Discovery 2023).

These are the project's own physics models, written for demos, tests and simulated devices. They
stand in for real samples; every Dataset they produce says so in ``attrs["source"]``
(``"bluesky_digitwin.sim.<Model>"``) and must never be mixed up with measured data.

Models (small frozen dataclasses, vectorised, noiseless unless a method says otherwise):

- :class:`FirstOrderMagnet`: ErCo2-like Bean–Rodbell ferrimagnet, first-order transition near
  35 K that becomes continuous and shifts up in field. Moment in emu.
- :class:`MovingTransitionMagnet`: Fe3Ga4-like; a ferromagnetic (high moment) phase gives way to
  an antiferromagnetic (low moment) one at a temperature that rises by ~30 K per tesla.
- :class:`SuperconductingFilm`: R(T, H) of a film with Tc(0) = 7.3 K, suppressed by the field.
- :class:`ArpesMap`: photoemission intensity over two emission angles with many pockets, a
  detector sensitivity that falls towards the edges of the primary angle, and a detection limit.

Scan generators return an :class:`xarray.Dataset` along the single dimension ``"point"`` in scan
order (the fast axis increasing inside each block of constant slow axis), one 1-D variable per
axis and one for the measured quantity, each with ``units`` and ``long_name``.

Units: temperature K, magnetic field Oe (1 Oe <-> mu0 H = 1e-4 T), moment emu (= 1e-3 A m^2),
magnetisation emu/g (= A m^2/kg), entropy J/(kg K), resistance ohm, angles deg, intensity counts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Protocol

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ArpesMap",
    "FirstOrderMagnet",
    "MovingTransitionMagnet",
    "SuperconductingFilm",
    "arpes_scan",
    "coarse_arpes",
    "coarse_magnetization",
    "coarse_moving_transition",
    "coarse_resistance",
    "isofield_scans",
    "resistance_scans",
]

FloatArray = NDArray[np.float64]
SeedLike = int | np.random.Generator | None

#: Bohr magneton over Boltzmann constant, K/T (CODATA 2018).
MU_B_OVER_K_B = 0.67171381563
#: Avogadro constant times Bohr magneton, emu/mol (= 1e-3 A m^2/mol).
N_A_MU_B = 5584.938
#: Molar gas constant, J/(mol K).
GAS_CONSTANT = 8.314462618
#: Oersted to tesla for mu0 H in vacuum.
OE_TO_T = 1e-4


# --------------------------------------------------------------------------------------------
# Brillouin-function helpers for the Bean–Rodbell model
# --------------------------------------------------------------------------------------------


def _brillouin(J: float, x: FloatArray) -> FloatArray:
    """Brillouin function B_J(x) for x >= 0 (the reduced magnetisation of a free spin J)."""
    a = (2 * J + 1) / (2 * J)
    c = 1 / (2 * J)
    # coth(a x) - coth(c x) cancels badly near 0; the cubic Taylor series is exact to ~1e-15 there.
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    full = a / np.tanh(a * xs) - c / np.tanh(c * xs)
    a1 = (J + 1) / (3 * J)
    c3 = ((J + 1) ** 2 + J**2) * (J + 1) / (90 * J**3)
    return np.where(small, a1 * x - c3 * x**3, full)


def _brillouin_slope(J: float, x: FloatArray) -> FloatArray:
    """dB_J/dx for x >= 0."""
    a = (2 * J + 1) / (2 * J)
    c = 1 / (2 * J)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)

    def inv_sinh2(u: FloatArray) -> FloatArray:
        # 1/sinh(u)^2 = 4 e^{-2u} / (1 - e^{-2u})^2, which cannot overflow for large u.
        return 4 * np.exp(-2 * u) / np.expm1(-2 * u) ** 2

    full = c**2 * inv_sinh2(c * xs) - a**2 * inv_sinh2(a * xs)
    a1 = (J + 1) / (3 * J)
    c3 = ((J + 1) ** 2 + J**2) * (J + 1) / (90 * J**3)
    return np.where(small, a1 - 3 * c3 * x**2, full)


def _log_sinh(u: FloatArray) -> FloatArray:
    """log(sinh(u)) for u > 0 without overflow."""
    return u + np.log(-np.expm1(-2 * u)) - np.log(2.0)


def _spin_entropy(J: float, x: FloatArray, sigma: FloatArray) -> FloatArray:
    """Entropy of free spins J polarised to ``sigma = B_J(x)``, in units of k_B per spin."""
    a = (2 * J + 1) / (2 * J)
    c = 1 / (2 * J)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    log_z = np.where(
        small,
        np.log(2 * J + 1) + (J + 1) / (6 * J) * x**2,
        _log_sinh(a * xs) - _log_sinh(c * xs),
    )
    return log_z - x * sigma


@lru_cache(maxsize=8)
def _sigma_grid(J: float, n: int = 200) -> tuple[FloatArray, FloatArray]:
    """A grid uniform in sigma on [0, 1) with the matching x = B_J^{-1}(sigma).

    The last point has a huge x (sigma = 1 to machine precision) so that the self-consistency
    residual is positive there at any temperature above ~0.01 K: a sign change always exists.
    """
    sigma = np.linspace(0.0, 1.0 - 1e-9, n - 1)
    lo, hi = np.zeros_like(sigma), np.full_like(sigma, 1e3)
    for _ in range(80):  # B_J is monotonic: plain bisection is robust
        mid = 0.5 * (lo + hi)
        below = _brillouin(J, mid) < sigma
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    x = np.append(0.5 * (lo + hi), 1e4)
    x[0] = 0.0
    return x, _brillouin(J, x)


def _as_float(a: ArrayLike) -> FloatArray:
    return np.asarray(a, dtype=np.float64)


def _check_temperature(T: FloatArray) -> None:
    if np.any(~np.isfinite(T)) or np.any(T <= 0):
        raise ValueError("temperatures must be finite and > 0 K")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstOrderMagnet:
    """ErCo2-like magnet: Bean–Rodbell mean field with a first-order transition.

    ErCo2 is a ferrimagnet (Er 4f moments antiparallel to induced Co 3d moments); its
    itinerant-electron metamagnetism makes the ordering first order at T_C ~ 33–35 K. This model
    keeps one effective sublattice of spins ``J`` carrying the net moment and mimics the
    metamagnetism with the Bean–Rodbell magnetoelastic term: the reduced magnetisation
    ``sigma`` solves

        sigma = B_J(x),   T x = (3J/(J+1)) T0 (sigma + eta kappa_J sigma^3) + m mu_B mu0 H / k_B

    with ``kappa_J`` the cubic coefficient of B_J^{-1}, so that ``eta > 1`` makes the transition
    first order (the Bean–Rodbell criterion) and ``T0`` is the Curie temperature at ``eta = 1``;
    ``m = moment_muB`` is the saturation moment (g J).

    The solution returned is the thermodynamically stable (equilibrium) branch: all minima of
    the Landau free energy f(sigma) are located on a grid, refined by bracketed Newton steps, and
    the lowest is kept. There is no hysteresis; at low field M(T) jumps where the two minima
    cross, and above the critical field the transition becomes a smooth, field-shifted crossover.
    With the defaults: T_C = 34.7 K at 100 Oe, 48.7 K (crossover) at 5 T, first order up to about
    1–2 T, |ΔS_M| at 5 T peaking at 36.5 J/(kg K) (ErCo2: ~35), moment 5e-5..0.082 emu
    over 10–60 K, 100 Oe – 5 T. About 2 microseconds per point. Because the
    branch is the equilibrium one, the Maxwell relation holds exactly and
    :meth:`entropy_change` gives the true Delta S_M to compare with estimates from M(T, H).
    Demagnetisation and domains are ignored (the sample is a single domain).

    Parameters
    ----------
    T0_K
        Mean-field ordering temperature without magnetoelastic coupling, K.
    eta
        Bean–Rodbell magnetoelastic parameter (dimensionless); > 1 for a first-order transition.
    J
        Effective angular momentum quantum number (Er3+ has J = 15/2).
    moment_muB
        Saturation moment per formula unit, Bohr magnetons (net ferrimagnetic moment).
    molar_mass_g_per_mol
        Molar mass of one formula unit, g/mol (ErCo2: 285.1).
    mass_g
        Sample mass, g.
    noise_emu
        Standard deviation of Gaussian noise added by :meth:`measure`, emu.
    name
        Material label written to Dataset attrs.
    """

    T0_K: float = 31.0
    eta: float = 2.5
    J: float = 7.5
    moment_muB: float = 7.0
    molar_mass_g_per_mol: float = 285.1
    mass_g: float = 0.6e-3
    noise_emu: float = 0.0
    name: str = "ErCo2-like"

    #: Points solved at once; bounds the (points x grid) work array to a few MB.
    _chunk = 4096

    def reduced_magnetization(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Equilibrium reduced magnetisation sigma = M / M_s in [-1, 1] (odd in H)."""
        sigma, _ = self._solve(T_K, H_Oe)
        return sigma

    def magnetization(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Magnetisation in emu/g (= A m^2/kg) at ``T_K`` (K) and ``H_Oe`` (Oe)."""
        return self.saturation_magnetization * self.reduced_magnetization(T_K, H_Oe)

    def moment(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Magnetic moment of the sample in emu (noiseless)."""
        return self.mass_g * self.magnetization(T_K, H_Oe)

    def measure(self, T_K: ArrayLike, H_Oe: ArrayLike, rng: SeedLike = None) -> FloatArray:
        """Moment in emu as a magnetometer reads it: :meth:`moment` plus N(0, noise_emu)."""
        return _add_gaussian(self.moment(T_K, H_Oe), self.noise_emu, rng)

    def entropy(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Magnetic entropy of the spin system, J/(kg K)."""
        _, s = self._solve(T_K, H_Oe)
        return s * GAS_CONSTANT / (self.molar_mass_g_per_mol * 1e-3)

    def entropy_change(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Exact isothermal magnetic entropy change S(T, H) - S(T, 0), J/(kg K) (negative).

        Equal to the Maxwell-relation integral mu0 int_0^H (dM/dT)_H' dH'; use it as the ground
        truth for Delta S_M estimated from (simulated or learned) M(T, H).
        """
        T, H = np.broadcast_arrays(_as_float(T_K), _as_float(H_Oe))
        return self.entropy(T, H) - self.entropy(T, np.zeros_like(H))

    @property
    def saturation_magnetization(self) -> float:
        """M_s in emu/g (= A m^2/kg)."""
        return N_A_MU_B * self.moment_muB / self.molar_mass_g_per_mol

    # -- solver ------------------------------------------------------------------------------

    def _solve(self, T_K: ArrayLike, H_Oe: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Return (signed sigma, entropy per spin in k_B) broadcast over T_K and H_Oe."""
        T, H = np.broadcast_arrays(_as_float(T_K), _as_float(H_Oe))
        _check_temperature(T)
        shape = T.shape
        T, H = T.ravel(), H.ravel()
        # Zeeman energy of the full moment in K; the model is odd in H, so solve for |H|.
        b = self.moment_muB * MU_B_OVER_K_B * np.abs(H) * OE_TO_T
        sigma = np.empty_like(T)
        entropy = np.empty_like(T)
        for start in range(0, T.size, self._chunk):
            part = slice(start, start + self._chunk)
            sigma[part], entropy[part] = self._solve_chunk(T[part], b[part])
        sigma = np.where(H < 0, -sigma, sigma)
        return sigma.reshape(shape), entropy.reshape(shape)

    def _coefficients(self) -> tuple[float, float]:
        """(exchange in K, cubic coefficient): the molecular field is exchange (s + cubic s^3)."""
        J = self.J
        a1 = (J + 1) / (3 * J)
        c3 = ((J + 1) ** 2 + J**2) * (J + 1) / (90 * J**3)
        # kappa_J = c3 / a1^3 is the sigma^3 coefficient of B_J^{-1}; scaling it by eta puts the
        # tricritical point at eta = 1 for any J.
        return 3 * J / (J + 1) * self.T0_K, self.eta * c3 / a1**3

    def _solve_chunk(self, T: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
        J = self.J
        exchange, cubic = self._coefficients()
        x_grid, s_grid = _sigma_grid(J)
        # Residual r = df/dsigma (per spin, K): negative below a minimum of f, positive above.
        r = T[:, None] * x_grid - exchange * (s_grid + cubic * s_grid**3) - b[:, None]
        rising = (r[:, :-1] <= 0) & (r[:, 1:] > 0)  # each such cell holds a minimum of f
        n_cells = rising.shape[1]
        # The Bean–Rodbell f(sigma) has at most two minima: the first and last rising cells.
        first = np.argmax(rising, axis=1)
        last = n_cells - 1 - np.argmax(rising[:, ::-1], axis=1)
        x = self._polish(x_grid[first], x_grid[first + 1], T, b)
        two = first != last  # near a first-order transition: low- and high-moment minima
        if np.any(two):
            x_low = x[two]
            x_high = self._polish(x_grid[last[two]], x_grid[last[two] + 1], T[two], b[two])
            f_low = self._free_energy(x_low, T[two], b[two])
            f_high = self._free_energy(x_high, T[two], b[two])
            x[two] = np.where(f_high < f_low, x_high, x_low)
        s = _brillouin(J, x)
        return s, _spin_entropy(J, x, s)

    def _free_energy(self, x: FloatArray, T: FloatArray, b: FloatArray) -> FloatArray:
        """Landau free energy per spin in K: exchange + magnetoelastic, Zeeman, -T S."""
        exchange, cubic = self._coefficients()
        s = _brillouin(self.J, x)
        energy = -exchange * (s**2 / 2 + cubic * s**4 / 4) - b * s
        return energy - T * _spin_entropy(self.J, x, s)

    def _polish(self, lo: FloatArray, hi: FloatArray, T: FloatArray, b: FloatArray) -> FloatArray:
        """Root of the residual in [lo, hi] (x space): Newton steps kept inside the bracket.

        A Newton step that would leave the bracket is replaced by bisection, so this cannot
        diverge; within a grid cell Newton converges to machine precision in a few steps.
        """
        J = self.J
        exchange, cubic = self._coefficients()
        x = 0.5 * (lo + hi)
        for _ in range(40):
            s = _brillouin(J, x)
            r = T * x - exchange * (s + cubic * s**3) - b
            below = r <= 0
            lo, hi = np.where(below, x, lo), np.where(below, hi, x)
            slope = T - exchange * (1 + 3 * cubic * s**2) * _brillouin_slope(J, x)
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = x - r / slope
            inside = (newton >= lo) & (newton <= hi)  # x itself is an end of the bracket
            x_next = np.where(inside, newton, 0.5 * (lo + hi))
            if np.all(np.abs(x_next - x) <= 1e-13 * np.maximum(1.0, x)):
                return x_next
            x = x_next
        return x


@dataclass(frozen=True)
class MovingTransitionMagnet:
    """Fe3Ga4-like magnet: a ferro/antiferro transition that moves strongly with field.

    Phenomenological model. Below ``T_t(H)`` the sample is ferromagnetic (high moment), above it
    antiferromagnetic (low, linear-in-H moment). The field favours the ferromagnetic phase, so

        T_t(H) = T_t0 + dTt_dB * mu0 H     (K, mu0 H in T)

    and the phases are mixed with a logistic weight of width ``width_K``:

        M = w M_FM + (1 - w) M_AF,   w = 1 / (1 + exp((T - T_t(H)) / width_K))
        M_FM = M_s sqrt(1 - (T/T_C)^2) tanh(H / H_sat) + chi_AF H,   M_AF = chi_AF H.

    With the defaults the transition moves 3 K per 0.1 T (60 K between 0 and 2 T), which is why
    the field step must be < 0.1 T before derived quantities converge.

    Parameters
    ----------
    Tt0_K
        Transition temperature at zero field, K.
    dTt_dB_K_per_T
        Shift of the transition temperature with mu0 H, K/T.
    width_K
        Width of the transition, K.
    Ms_emu_per_g
        Ferromagnetic saturation magnetisation at T = 0, emu/g.
    Tc_K
        Curie temperature the ferromagnetic phase would have, K (sets the slow decrease of M_s).
    H_sat_Oe
        Field scale over which the ferromagnetic moment saturates (domains, demagnetisation), Oe.
    chi_af_emu_per_g_Oe
        Susceptibility of the antiferromagnetic phase, emu/(g Oe).
    mass_g
        Sample mass, g.
    noise_emu
        Standard deviation of Gaussian noise added by :meth:`measure`, emu.
    name
        Material label written to Dataset attrs.
    """

    Tt0_K: float = 68.0
    dTt_dB_K_per_T: float = 30.0
    width_K: float = 2.0
    Ms_emu_per_g: float = 55.0
    Tc_K: float = 420.0
    H_sat_Oe: float = 1500.0
    chi_af_emu_per_g_Oe: float = 1.5e-4
    mass_g: float = 2.0e-3
    noise_emu: float = 0.0
    name: str = "Fe3Ga4-like"

    def transition_temperature(self, H_Oe: ArrayLike) -> FloatArray:
        """Ferro/antiferro transition temperature T_t(H) in K."""
        return self.Tt0_K + self.dTt_dB_K_per_T * np.abs(_as_float(H_Oe)) * OE_TO_T

    def magnetization(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Magnetisation in emu/g at temperature ``T_K`` (K) and field ``H_Oe`` (Oe)."""
        T, H = np.broadcast_arrays(_as_float(T_K), _as_float(H_Oe))
        _check_temperature(T)
        ms = self.Ms_emu_per_g * np.sqrt(np.clip(1 - (T / self.Tc_K) ** 2, 0.0, None))
        m_af = self.chi_af_emu_per_g_Oe * H
        m_fm = ms * np.tanh(H / self.H_sat_Oe) + m_af
        # 0.5 (1 - tanh(z/2)) is the logistic 1/(1+e^z) without overflow for large |z|.
        z = (T - self.transition_temperature(H)) / self.width_K
        w = 0.5 * (1 - np.tanh(z / 2))
        return w * m_fm + (1 - w) * m_af

    def moment(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Magnetic moment of the sample in emu (noiseless)."""
        return self.mass_g * self.magnetization(T_K, H_Oe)

    def measure(self, T_K: ArrayLike, H_Oe: ArrayLike, rng: SeedLike = None) -> FloatArray:
        """Moment in emu as a magnetometer reads it: :meth:`moment` plus N(0, noise_emu)."""
        return _add_gaussian(self.moment(T_K, H_Oe), self.noise_emu, rng)


@dataclass(frozen=True)
class SuperconductingFilm:
    """Resistance of a superconducting film, R(T, H), with a field-suppressed Tc.

    ``Tc(H) = Tc0 * (1 - (|H| / Hc2)**p)`` (0 at and above ``Hc2``), and the transition is a
    logistic step whose width grows with field (vortex motion broadens it)::

        R = R_n / (1 + exp(-(T - Tc(H)) / w(H))),   w(H) = w0 + w1 |H| / Hc2.

    Parameters
    ----------
    R_normal_ohm
        Normal-state resistance, ohm.
    Tc0_K
        Critical temperature at zero field, K.
    Hc2_Oe
        Field at which Tc reaches 0 K, Oe.
    exponent
        Exponent p of the Tc(H) law: 1 gives the linear Hc2(T) of a dirty film near Tc, larger
        values make Tc less sensitive to weak fields.
    width0_K, width1_K
        Transition width at zero field and its increase at ``Hc2``, K.
    noise_ohm
        Standard deviation of the Gaussian noise added by :meth:`measure`, ohm.
    name
        Material label written to Dataset attrs.
    """

    R_normal_ohm: float = 0.066
    Tc0_K: float = 7.3
    Hc2_Oe: float = 50000.0
    exponent: float = 1.0
    width0_K: float = 0.05
    width1_K: float = 0.4
    noise_ohm: float = 0.002
    name: str = "superconducting film"

    def critical_temperature(self, H_Oe: ArrayLike) -> FloatArray:
        """Tc(H) in K (midpoint of the transition)."""
        h = np.clip(np.abs(_as_float(H_Oe)) / self.Hc2_Oe, 0.0, 1.0)
        return self.Tc0_K * (1 - h**self.exponent)

    def transition_width(self, H_Oe: ArrayLike) -> FloatArray:
        """Width w(H) of the logistic step in K."""
        h = np.clip(np.abs(_as_float(H_Oe)) / self.Hc2_Oe, 0.0, 1.0)
        return self.width0_K + self.width1_K * h

    def resistance(self, T_K: ArrayLike, H_Oe: ArrayLike) -> FloatArray:
        """Noiseless resistance in ohm at temperature ``T_K`` (K) and field ``H_Oe`` (Oe)."""
        T, H = np.broadcast_arrays(_as_float(T_K), _as_float(H_Oe))
        _check_temperature(T)
        z = (T - self.critical_temperature(H)) / self.transition_width(H)
        return self.R_normal_ohm * 0.5 * (1 + np.tanh(z / 2))  # logistic, overflow-free

    def measure(self, T_K: ArrayLike, H_Oe: ArrayLike, rng: SeedLike = None) -> FloatArray:
        """Resistance in ohm as a bridge reads it: :meth:`resistance` plus N(0, noise_ohm)."""
        return _add_gaussian(self.resistance(T_K, H_Oe), self.noise_ohm, rng)


@dataclass(frozen=True)
class ArpesMap:
    """ARPES intensity over two emission angles with many pockets and detector edge effects.

    The spectral weight is a sum of elliptical rings (Fermi-surface pockets, Lorentzian profile
    across the ring) and round spots (squared Lorentzians) at positions, sizes and orientations
    drawn from ``seed``. Counts are

        N = (background + peak_counts * weight(theta, phi)) * sensitivity(theta),

    where the sensitivity falls smoothly towards both edges of the primary angle (the ends of
    the analyser slit). Values below ``detection_limit`` read as 0, as after a detector
    threshold. :meth:`measure` draws Poisson counts first when ``poisson_noise`` is set.

    Parameters
    ----------
    seed
        Seed of the random layout of pockets and spots (not of the counting noise).
    n_pockets, n_spots
        Number of ring-like pockets and of round spots.
    line_width_deg
        Half width at half maximum of the ring profile, deg.
    peak_counts
        Counts at the top of an isolated feature with full sensitivity.
    background_counts
        Uniform background, counts.
    detection_limit
        Counts below this read as 0.
    edge_margin_deg, edge_width_deg
        The sensitivity is 1/2 at ``edge_margin_deg`` inside each primary-angle edge and falls
        over ``edge_width_deg`` (logistic).
    theta_range_deg, phi_range_deg
        Primary (slit) and secondary (deflector) angle windows, deg.
    poisson_noise
        Whether :meth:`measure` adds counting noise.
    name
        Material label written to Dataset attrs.
    """

    seed: int = 0
    n_pockets: int = 16
    n_spots: int = 8
    line_width_deg: float = 0.35
    peak_counts: float = 200.0
    background_counts: float = 4.0
    detection_limit: float = 8.0
    edge_margin_deg: float = 3.0
    edge_width_deg: float = 1.0
    theta_range_deg: tuple[float, float] = (-22.7, 24.3)
    phi_range_deg: tuple[float, float] = (-15.0, 15.0)
    poisson_noise: bool = True
    name: str = "ARPES map"

    @cached_property
    def _features(self) -> dict[str, FloatArray]:
        # cached_property writes to the instance __dict__, which a frozen dataclass allows.
        rng = np.random.default_rng(self.seed)
        (t0, t1), (p0, p1) = self.theta_range_deg, self.phi_range_deg
        n, m = self.n_pockets, self.n_spots
        a = rng.uniform(1.5, 4.5, n)
        return {
            "ring_theta": rng.uniform(t0 - 2, t1 + 2, n),
            "ring_phi": rng.uniform(p0 - 2, p1 + 2, n),
            "ring_a": a,
            "ring_b": a * rng.uniform(0.5, 1.0, n),
            "ring_angle": rng.uniform(0, np.pi, n),
            "ring_amp": rng.uniform(0.4, 1.0, n),
            "spot_theta": rng.uniform(t0, t1, m),
            "spot_phi": rng.uniform(p0, p1, m),
            "spot_width": rng.uniform(0.5, 1.2, m),
            "spot_amp": rng.uniform(0.5, 1.0, m),
        }

    def spectral_weight(self, theta_deg: ArrayLike, phi_deg: ArrayLike) -> FloatArray:
        """Sum of the features, dimensionless (an isolated feature peaks at about its amplitude)."""
        theta, phi = np.broadcast_arrays(_as_float(theta_deg), _as_float(phi_deg))
        f = self._features
        weight = np.zeros(theta.shape)
        gamma = self.line_width_deg
        rings = zip(
            f["ring_theta"],
            f["ring_phi"],
            f["ring_a"],
            f["ring_b"],
            f["ring_angle"],
            f["ring_amp"],
            strict=True,
        )
        for t, p, a, b, ang, amp in rings:
            u = (theta - t) * np.cos(ang) + (phi - p) * np.sin(ang)
            v = -(theta - t) * np.sin(ang) + (phi - p) * np.cos(ang)
            # Approximate distance to the ellipse, deg: good enough for a line profile.
            d = (np.hypot(u / a, v / b) - 1) * np.sqrt(a * b)
            weight += amp * gamma**2 / (d**2 + gamma**2)
        spots = zip(f["spot_theta"], f["spot_phi"], f["spot_width"], f["spot_amp"], strict=True)
        for t, p, w, amp in spots:
            # Squared Lorentzian: a compact spot whose tails do not fill the map.
            weight += amp * (w**2 / ((theta - t) ** 2 + (phi - p) ** 2 + w**2)) ** 2
        return weight

    def sensitivity(self, theta_deg: ArrayLike) -> FloatArray:
        """Relative detector sensitivity along the primary angle, in (0, 1]."""
        theta = _as_float(theta_deg)
        t0, t1 = self.theta_range_deg
        m, w = self.edge_margin_deg, self.edge_width_deg
        rise = 0.5 * (1 + np.tanh((theta - t0 - m) / (2 * w)))
        fall = 0.5 * (1 + np.tanh((t1 - m - theta) / (2 * w)))
        return rise * fall

    def expected_counts(self, theta_deg: ArrayLike, phi_deg: ArrayLike) -> FloatArray:
        """Mean counts before the detection limit, counts."""
        weight = self.spectral_weight(theta_deg, phi_deg)
        return (self.background_counts + self.peak_counts * weight) * self.sensitivity(theta_deg)

    def intensity(self, theta_deg: ArrayLike, phi_deg: ArrayLike) -> FloatArray:
        """Noiseless intensity in counts, 0 where below the detection limit."""
        return self._threshold(self.expected_counts(theta_deg, phi_deg))

    def measure(self, theta_deg: ArrayLike, phi_deg: ArrayLike, rng: SeedLike = None) -> FloatArray:
        """Intensity in counts with Poisson noise (if ``poisson_noise``) and the detection limit."""
        counts = self.expected_counts(theta_deg, phi_deg)
        if self.poisson_noise:
            counts = np.random.default_rng(rng).poisson(counts).astype(np.float64)
        return self._threshold(counts)

    def _threshold(self, counts: FloatArray) -> FloatArray:
        return np.where(counts < self.detection_limit, 0.0, counts)


def _add_gaussian(values: FloatArray, std: float, rng: SeedLike) -> FloatArray:
    if std <= 0:
        return values
    return values + np.random.default_rng(rng).normal(0.0, std, np.shape(values))


# --------------------------------------------------------------------------------------------
# Scan generators
# --------------------------------------------------------------------------------------------


class _Magnet(Protocol):
    name: str
    noise_emu: float

    def measure(self, T_K: ArrayLike, H_Oe: ArrayLike, rng: SeedLike = None) -> FloatArray: ...


TemperaturesLike = ArrayLike | Mapping[float, ArrayLike]


def _blocks(
    fields_Oe: Iterable[float] | None, T_K: TemperaturesLike
) -> tuple[FloatArray, FloatArray]:
    """Flatten (field, temperatures) blocks into scan-ordered (T, H) columns.

    ``T_K`` is one array shared by all fields or a mapping field -> array (a ragged grid). Fields
    keep the order given (ascending mapping keys if ``fields_Oe`` is None); temperatures are
    sorted ascending inside each block, as a sweep would take them.
    """
    if isinstance(T_K, Mapping):
        fields = sorted(T_K) if fields_Oe is None else list(fields_Oe)
        missing = [f for f in fields if f not in T_K]
        if missing:
            raise ValueError(f"no temperatures given for field(s) {missing}")
        per_field = [np.sort(_as_float(T_K[f]).ravel()) for f in fields]
    else:
        if fields_Oe is None:
            raise ValueError("give fields_Oe, or T_K as a mapping field -> temperatures")
        fields = list(fields_Oe)
        shared = np.sort(_as_float(T_K).ravel())
        per_field = [shared] * len(fields)
    if not fields:
        raise ValueError("no fields given")
    T = np.concatenate(per_field)
    H = np.concatenate([np.full(t.size, float(f)) for f, t in zip(fields, per_field, strict=True)])
    return T, H


def _variable(values: FloatArray, units: str, long_name: str) -> tuple:
    return ("point", values, {"units": units, "long_name": long_name})


def _dataset(
    material: object, data_vars: dict[str, tuple], noise: str, seed: SeedLike
) -> xr.Dataset:
    attrs = {
        "material": material.name,  # type: ignore[attr-defined]
        "source": f"bluesky_digitwin.sim.{type(material).__name__}",
        "parameters": json.dumps(dataclasses.asdict(material)),  # type: ignore[call-overload]
        "noise": noise,
    }
    if isinstance(seed, (int, np.integer)):
        attrs["seed"] = int(seed)
    return xr.Dataset(data_vars, attrs=attrs)


def isofield_scans(
    material: _Magnet,
    fields_Oe: Iterable[float] | None,
    T_K: TemperaturesLike,
    noise: float | None = None,
    seed: SeedLike = None,
) -> xr.Dataset:
    """Temperature sweeps of the moment at fixed fields, as a magnetometer would run them.

    Parameters
    ----------
    material
        A :class:`FirstOrderMagnet` or :class:`MovingTransitionMagnet`.
    fields_Oe
        Fields of the sweeps in scan order, Oe. May be None if ``T_K`` is a mapping.
    T_K
        Temperatures of every sweep (1-D array, K), or a mapping field (Oe) -> temperatures for a
        ragged grid.
    noise
        Standard deviation of Gaussian noise on the moment, emu; None uses
        ``material.noise_emu``.
    seed
        Seed or Generator for the noise.

    Returns
    -------
    xarray.Dataset
        Along ``point``: ``T`` (K), ``H`` (Oe), ``M`` (emu).
    """
    if noise is not None:
        material = dataclasses.replace(material, noise_emu=float(noise))  # type: ignore[type-var]
    T, H = _blocks(fields_Oe, T_K)
    M = material.measure(T, H, rng=seed)
    std = material.noise_emu
    return _dataset(
        material,
        {
            "T": _variable(T, "K", "temperature"),
            "H": _variable(H, "Oe", "magnetic field"),
            "M": _variable(M, "emu", "magnetic moment"),
        },
        f"gaussian, std={std:g} emu" if std > 0 else "none",
        seed,
    )


def resistance_scans(
    material: SuperconductingFilm,
    fields_Oe: Iterable[float] | None,
    T_K: TemperaturesLike,
    noise: float | None = None,
    seed: SeedLike = None,
) -> xr.Dataset:
    """Temperature sweeps of the resistance at fixed fields (ragged grids allowed).

    Parameters
    ----------
    material
        A :class:`SuperconductingFilm`.
    fields_Oe
        Fields of the sweeps in scan order, Oe. May be None if ``T_K`` is a mapping.
    T_K
        Temperatures shared by all sweeps (K), or a mapping field (Oe) -> temperatures.
    noise
        Standard deviation of Gaussian noise, ohm; None uses ``material.noise_ohm``.
    seed
        Seed or Generator for the noise.

    Returns
    -------
    xarray.Dataset
        Along ``point``: ``T`` (K), ``H`` (Oe), ``R`` (ohm).
    """
    if noise is not None:
        material = dataclasses.replace(material, noise_ohm=float(noise))
    T, H = _blocks(fields_Oe, T_K)
    R = material.measure(T, H, rng=seed)
    std = material.noise_ohm
    return _dataset(
        material,
        {
            "T": _variable(T, "K", "temperature"),
            "H": _variable(H, "Oe", "magnetic field"),
            "R": _variable(R, "ohm", "resistance"),
        },
        f"gaussian, std={std:g} ohm" if std > 0 else "none",
        seed,
    )


def arpes_scan(
    arpes_map: ArpesMap,
    primary_deg: ArrayLike,
    secondary_deg: ArrayLike,
    noise: bool | None = None,
    seed: SeedLike = None,
) -> xr.Dataset:
    """An angle map: for each secondary angle (slow), all primary angles (fast, increasing).

    Parameters
    ----------
    arpes_map
        The :class:`ArpesMap` to measure.
    primary_deg
        Primary (analyser slit) angles, deg.
    secondary_deg
        Secondary (deflector) angles in scan order, deg.
    noise
        Poisson counting noise on/off; None uses ``arpes_map.poisson_noise``.
    seed
        Seed or Generator for the counting noise.

    Returns
    -------
    xarray.Dataset
        Along ``point``: ``theta`` (deg, primary), ``phi`` (deg, secondary), ``I`` (counts).
    """
    if noise is not None:
        arpes_map = dataclasses.replace(arpes_map, poisson_noise=bool(noise))
    theta_axis = np.sort(_as_float(primary_deg).ravel())
    phi_axis = _as_float(secondary_deg).ravel()
    phi = np.repeat(phi_axis, theta_axis.size)
    theta = np.tile(theta_axis, phi_axis.size)
    counts = arpes_map.measure(theta, phi, rng=seed)
    return _dataset(
        arpes_map,
        {
            "theta": _variable(theta, "deg", "primary emission angle"),
            "phi": _variable(phi, "deg", "secondary emission angle"),
            "I": _variable(counts, "counts", "photoemission intensity"),
        },
        "poisson" if arpes_map.poisson_noise else "none",
        seed,
    )


# --------------------------------------------------------------------------------------------
# Coarse data sets like the paper's (sizes as in Terashima et al. 2023)
# --------------------------------------------------------------------------------------------

#: Fields of the coarse ErCo2 set, Oe.
ERCO2_FIELDS_OE = (100.0, 1000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0)


def coarse_magnetization(
    seed: SeedLike = 0, noise: float = 1e-6, material: FirstOrderMagnet | None = None
) -> xr.Dataset:
    """ErCo2-like coarse M(T, H): 8 fields (100 Oe – 5 T) x 101 temperatures 10–60 K = 808 points.

    ``noise`` is the Gaussian noise on the moment in emu (a SQUID magnetometer's floor).
    """
    material = material or FirstOrderMagnet()
    return isofield_scans(material, ERCO2_FIELDS_OE, np.linspace(10.0, 60.0, 101), noise, seed)


def coarse_moving_transition(
    seed: SeedLike = 0, noise: float = 1e-6, material: MovingTransitionMagnet | None = None
) -> xr.Dataset:
    """Fe3Ga4-like coarse M(T, H): 17 fields 100 Oe – 2 T x 161 temperatures 5–200 K = 2737."""
    material = material or MovingTransitionMagnet()
    fields = np.array([100.0, *np.arange(1000.0, 15001.0, 1000.0), 20000.0])
    return isofield_scans(material, fields, np.linspace(5.0, 200.0, 161), noise, seed)


def coarse_resistance(
    seed: SeedLike = 0, noise: float | None = None, material: SuperconductingFilm | None = None
) -> xr.Dataset:
    """Noisy R(T, H) on a ragged grid: 9 fields 0–3 T, each swept 2 K either side of its Tc.

    Steps of 0.05 K, clipped to the cryostat's 1.8–10 K, so the sweeps differ in length
    (700 points with the default film, close to the paper's 767-point set).
    """
    material = material or SuperconductingFilm()
    grid = np.round(np.arange(1.8, 10.0 + 1e-9, 0.05), 10)
    T_by_field = {}
    for field in (0.0, 2500.0, 5000.0, 7500.0, 10000.0, 15000.0, 20000.0, 25000.0, 30000.0):
        tc = float(material.critical_temperature(field))
        T_by_field[field] = grid[np.abs(grid - tc) <= 2.0]
    return resistance_scans(material, None, T_by_field, noise, seed)


def coarse_arpes(
    seed: SeedLike = 0, noise: bool | None = None, arpes_map: ArpesMap | None = None
) -> xr.Dataset:
    """ARPES map: 31 secondary (-15..15 deg) x 967 primary angles (-22.7..24.3 deg) = 29977."""
    arpes_map = arpes_map or ArpesMap()
    (t0, t1), (p0, p1) = arpes_map.theta_range_deg, arpes_map.phi_range_deg
    return arpes_scan(arpes_map, np.linspace(t0, t1, 967), np.linspace(p0, p1, 31), noise, seed)
