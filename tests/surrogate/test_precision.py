"""Which arithmetic the networks train in, and how "auto" decides."""

from __future__ import annotations

import os

import pytest

from bluesky_digitwin.surrogate import precision
from bluesky_digitwin.surrogate.precision import (
    FPMATH_ENV,
    allow_bfloat16_inside_matmuls,
    bfloat16_inside_matmuls,
    check_precision,
    cpu_flags_have_bfloat16,
    resolve_precision,
)

# Abridged /proc/cpuinfo texts of three CPUs.
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\nbugs\t\t: amx_bf16\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(SAPPHIRE_RAPIDS, True), (ZEN4, True), (SKYLAKE, False), ("", False)],
    ids=["amx", "avx512-bf16", "float32-only", "empty"],
)
def test_bfloat16_is_native_only_where_the_flags_say_so(cpuinfo, native):
    # Only the flags line counts (the Skylake text names amx_bf16 elsewhere).
    assert cpu_flags_have_bfloat16(cpuinfo) is native


@pytest.mark.parametrize("native", [True, False])
def test_auto_means_bfloat16_matmuls_only_on_a_cpu_that_has_them(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    assert resolve_precision("auto") == ("mixed_bfloat16" if native else "float32")
    # An explicit choice is kept whatever the CPU.
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"


def test_without_onednn_no_cpu_counts_as_native(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    precision.native_bfloat16.cache_clear()
    try:
        assert precision.native_bfloat16() is False
    finally:
        precision.native_bfloat16.cache_clear()


def test_this_machine_reads_its_own_cpu_flags():
    # Whatever the CPU, the answer is a bool and stays the same within a process.
    assert precision.native_bfloat16() in (True, False)
    assert precision.native_bfloat16() is precision.native_bfloat16()


@pytest.mark.parametrize("bad", ["float16", "bf16", "", "AUTO"])
def test_an_unknown_precision_names_the_choices(bad):
    with pytest.raises(ValueError, match=r"choose one of auto, float32, mixed_bfloat16"):
        check_precision(bad)


@pytest.mark.parametrize("native", [True, False])
def test_a_process_of_its_own_lets_onednn_do_the_bfloat16_only_when_training_so(
    monkeypatch, native
):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    monkeypatch.delenv(FPMATH_ENV, raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    allow_bfloat16_inside_matmuls("float32")
    assert FPMATH_ENV not in os.environ and not bfloat16_inside_matmuls()
    allow_bfloat16_inside_matmuls("auto")
    assert bfloat16_inside_matmuls() is native
    monkeypatch.delenv(FPMATH_ENV, raising=False)
    allow_bfloat16_inside_matmuls("mixed_bfloat16")
    assert os.environ[FPMATH_ENV] == "BF16" and bfloat16_inside_matmuls()
    # Without oneDNN's kernels the switch does nothing.
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not bfloat16_inside_matmuls()
