"""The arithmetic the networks train in: float32, or bfloat16 matmuls where the CPU has them.

A network's hidden-to-hidden matmuls are most of a training step's arithmetic (five layers
of 160 nodes on two features: over 99 % of the multiply-adds). CPUs with bfloat16 matrix
instructions (Intel AMX, AVX512-BF16 on Intel and AMD) run them several times faster in
bfloat16 than in float32: on the benchmarks' machine a (16, 64, 160) x (16, 160, 160)
batched matmul reached 562 GFLOP/s on one core against 158 (benchmarks/RESULTS.md,
"bfloat16 matmuls, a fused Adam and fewer traced loops"). TensorFlow's oneDNN kernels
accumulate in float32 and round the product to bfloat16.

``"mixed_bfloat16"`` (Keras' name for the same idea) trains those hidden-to-hidden matmuls
in bfloat16 and everything else in float32: the weights, Adam's moments, the loss, the
first layer (the inputs keep their resolution: a temperature in bfloat16 would move in steps
of 0.4 %) and the last. Predictions are always float32, from the float32 weights, so the
twin a user evaluates is a smooth float32 network either way. On the fidelity benchmark it
changed no derived quantity beyond the seeds' own spread (benchmarks/RESULTS.md).

``"auto"`` (the default) is ``"mixed_bfloat16"`` on a CPU whose flags show bfloat16
instructions, ``"float32"`` otherwise: without them TensorFlow emulates bfloat16, slower than
float32. It is resolved where the networks train, so a search worker on another machine
decides for its own CPU.

In a process this package starts and owns (``digitwin fit``, a search worker) the same
bfloat16 matmuls cost less: TensorFlow's ``TF_SET_ONEDNN_FPMATH_MODE=BF16`` lets oneDNN run
float32 batched matmuls in bfloat16 inside the kernel, so the training loop needs no Cast ops
around them (a fifth of a six-network epoch's ops; benchmarks/RESULTS.md, "bfloat16 inside
oneDNN's matmuls"). TensorFlow reads the switch once per process and it applies to every
batched float32 matmul of the process, so it is set only where the whole process is ours
(:func:`allow_bfloat16_inside_matmuls`), never in a user's Python session: there the casts
stay. With the switch the first and last layers are computed without a batched matmul, so
the inputs and the output keep float32's resolution, as they do with the casts.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from bluesky_digitwin.errors import DigitwinInputError

__all__ = [
    "FPMATH_ENV",
    "PRECISIONS",
    "allow_bfloat16_inside_matmuls",
    "bfloat16_inside_matmuls",
    "check_precision",
    "cpu_flags_have_bfloat16",
    "hidden_matmuls",
    "native_bfloat16",
    "resolve_precision",
]

#: The values ``TrainConfig.precision`` takes.
PRECISIONS = ("auto", "float32", "mixed_bfloat16")

#: TensorFlow's environment variable that sets oneDNN's float32 math mode for the process.
FPMATH_ENV = "TF_SET_ONEDNN_FPMATH_MODE"

#: CPU flags (Linux's /proc/cpuinfo names) of instructions that multiply bfloat16 natively.
_BFLOAT16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def check_precision(precision: str) -> None:
    """Raise a ValueError that names the choices unless ``precision`` is one of them."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)} "
            "('auto' uses bfloat16 matmuls where the CPU multiplies bfloat16 natively)"
        )


def cpu_flags_have_bfloat16(cpuinfo: str) -> bool:
    """Whether the ``flags`` lines of a /proc/cpuinfo text name a bfloat16 instruction."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags" and _BFLOAT16_FLAGS & set(value.split()):
            return True
    return False


def _onednn_kernels_on() -> bool:
    # TensorFlow's switch for its oneDNN kernels, which are what use bfloat16 instructions.
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"


@functools.cache
def native_bfloat16() -> bool:
    """Whether this machine's CPU multiplies bfloat16 natively (read once per process).

    Only Linux says so in a file every process may read; elsewhere this is False, and the
    networks train in float32 unless asked otherwise. False too when TensorFlow's oneDNN
    kernels are switched off (``TF_ENABLE_ONEDNN_OPTS=0``): they are what use the
    instructions.
    """
    if not _onednn_kernels_on():
        return False
    try:
        return cpu_flags_have_bfloat16(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return False


def resolve_precision(precision: str) -> str:
    """``"float32"`` or ``"mixed_bfloat16"``: what ``precision`` means on this machine."""
    check_precision(precision)
    if precision == "auto":
        return "mixed_bfloat16" if native_bfloat16() else "float32"
    return precision


def bfloat16_inside_matmuls() -> bool:
    """Whether this process lets oneDNN run its batched float32 matmuls in bfloat16.

    True when ``TF_SET_ONEDNN_FPMATH_MODE=BF16`` is set (by
    :func:`allow_bfloat16_inside_matmuls`, or by the user) and oneDNN's kernels are on. On a
    CPU without bfloat16 units (:func:`native_bfloat16` False) oneDNN then still computes in
    float32.
    """
    return os.environ.get(FPMATH_ENV) == "BF16" and _onednn_kernels_on()


def allow_bfloat16_inside_matmuls(precision: str) -> None:
    """In a process of this package's own, let oneDNN do the bfloat16 matmuls ``precision``
    asks for, without casts.

    Call it first thing in a process whose every TensorFlow computation is this package's
    (the command line, a search worker): TensorFlow reads the switch at its first batched
    matmul, once, and it then applies to all of them. Nothing happens unless ``precision``
    resolves to ``"mixed_bfloat16"`` on this machine; a value the user set is kept.
    """
    if resolve_precision(precision) == "mixed_bfloat16":
        os.environ.setdefault(FPMATH_ENV, "BF16")


def hidden_matmuls(precision: str) -> str:
    """How a training loop in this process multiplies hidden layer by hidden layer.

    ``"float32"``; ``"bfloat16_casts"``: Cast ops to and from bfloat16 around each matmul;
    or ``"bfloat16_onednn"``: plain float32 matmuls that oneDNN runs in bfloat16, in a process
    where :func:`allow_bfloat16_inside_matmuls` (or the user) switched that on. The first and
    last layers stay float32 in all three (the population trainer computes them without a
    batched matmul in the last case).

    Raises
    ------
    DigitwinInputError
        ``precision`` asks for float32 in a process whose batched matmuls oneDNN runs in
        bfloat16 (the switch is on and the CPU has bfloat16 units): it could not be honoured.
        ``DigitalTwin.fit`` asks before its search starts.
    """
    wanted = resolve_precision(precision)
    inside = bfloat16_inside_matmuls()
    if wanted == "float32":
        if inside and native_bfloat16():
            raise DigitwinInputError(
                "precision 'float32' cannot be honoured in this process: "
                f"{FPMATH_ENV}=BF16 makes oneDNN run every batched float32 matmul in "
                "bfloat16; unset it before starting Python, or train with precision "
                "'mixed_bfloat16'"
            )
        return "float32"
    return "bfloat16_onednn" if inside else "bfloat16_casts"
