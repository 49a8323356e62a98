"""The C kernel check (csrc/tests/kernel_check.c): every fast kernel set against the reference,
built natively, cross-compiled for arm64 and run under qemu so that the NEON kernels are
tested on an x86 machine, and built with the AVX-512 intrinsics taken from SIMDe (portable C
implementations of every x86 intrinsic, the ``simde-py`` test dependency) and the AMX tile
instructions from csrc/tests/amx_emulate.h, so that the avx512 and amx kernels are tested on a
CPU without AVX-512 or AMX.

The arm64 half needs ``aarch64-linux-gnu-gcc`` and ``qemu-aarch64`` (or ``qemu-aarch64-static``)
on PATH; on Debian/Ubuntu: ``apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
qemu-user-static``. Without them the test is skipped, saying so.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from edgemoe._native import lib

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
KERNEL_SOURCES = [
    "kernels.c", "kernels_ref.c", "kernels_avx2.c", "kernels_avx512.c", "kernels_amx.c",
    "kernels_neon.c", "qact.c", "errbuf.c",
]
FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}"]


def build_check(cc: str, out: Path, extra: list[str]) -> Path:
    sources = [str(CSRC / "tests" / "kernel_check.c")] + [str(CSRC / s) for s in KERNEL_SOURCES]
    proc = subprocess.run([cc, *FLAGS, *extra, *sources, "-lm", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cc} failed:\n{proc.stderr}"
    return out


def run_check(cmd: list[str]) -> str:
    """Run the check with EDGEMOE_KERNELS unset (it reports what "auto" selects)."""
    env = {k: v for k, v in os.environ.items() if k != "EDGEMOE_KERNELS"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{output}"
    assert ", 0 failures" in proc.stdout, proc.stdout
    return proc.stdout


def test_kernel_check_native(tmp_path: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler (cc/gcc) on PATH")
    exe = build_check(cc, tmp_path / "kernel_check", [])
    out = run_check([str(exe)])
    if platform.machine() in ("x86_64", "AMD64") and "auto selects: avx2" in out:
        assert "avx2   matvec mxfp4" in out, out


def test_kernel_check_avx512_and_amx_emulated(tmp_path: Path) -> None:
    """The avx512 set with its intrinsics from SIMDe (EDGEMOE_EMULATE_AVX512; kernels.c then
    counts the set as runnable on any AVX2 CPU), and the amx set with its tile instructions from
    csrc/tests/amx_emulate.h (EDGEMOE_EMULATE_AMX): against the reference with int16 and int8
    activations, and batches of 3, 21 and 45 tokens (45 also on extreme scales and values)
    against one token at a time, bit for bit (for amx, its tiles against the avx512 route it
    takes for one token);
    under AddressSanitizer where gcc has it, so a load past a row's or a buffer's end fails.
    A real AVX-512 or AMX CPU runs the same sources through test_kernel_check_native and
    tests/test_kernels.py. SIMDe's headers ask GCC for loop vectorization that clang reports as
    a warning, so the check is built with gcc."""
    simde_py = pytest.importorskip("simde_py", reason="simde-py (the test extra) not installed")
    gcc = shutil.which("gcc")
    if platform.machine() not in ("x86_64", "AMD64") or not gcc:
        pytest.skip("needs an x86-64 machine with gcc")
    if not lib.edgemoe_kernels_available(b"avx2"):
        pytest.skip("the avx512 set borrows the avx2 kernels: this CPU has no AVX2")
    flags = ["-DEDGEMOE_EMULATE_AVX512", "-DEDGEMOE_EMULATE_AMX", f"-I{simde_py.get_include()}",
             "-Wno-psabi",   # psabi: a note on 512-bit arguments without -mavx512f
             "-O1"]          # -O2 makes gcc take minutes over SIMDe under the sanitizer
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    if subprocess.run([gcc, "-fsanitize=address", str(probe), "-o", str(tmp_path / "probe")],
                      capture_output=True).returncode == 0:
        flags.append("-fsanitize=address")
    exe = build_check(gcc, tmp_path / "kernel_check_emulated", flags)
    out = run_check([str(exe), "avx512", "amx"])
    assert "auto selects: amx" in out, out
    for set_ in ("amx", "avx512"):
        for type_ in ("q8_0", "mxfp4"):
            assert f"{set_:6s} matvec {type_}" in out, out


def cross_tools() -> tuple[str, str]:
    gcc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if not gcc or not qemu:
        missing = [n for n, p in (("aarch64-linux-gnu-gcc", gcc), ("qemu-aarch64", qemu)) if not p]
        pytest.skip(
            f"{' and '.join(missing)} not on PATH (apt-get install gcc-aarch64-linux-gnu "
            "libc6-dev-arm64-cross qemu-user-static)"
        )
    return gcc, qemu


@pytest.mark.parametrize("cpu", ["max", "cortex-a53"])
def test_kernel_check_neon_under_qemu(tmp_path: Path, cpu: str) -> None:
    """QEMU's "max" CPU has the dot product extension, so one token over int8 activations
    takes the SDOT kernels; the Cortex-A53 (Armv8.0) has not, and takes the int16 ones. Both
    must equal the batched route bit for bit (kernel_check's batch check)."""
    gcc, qemu = cross_tools()
    exe = build_check(gcc, tmp_path / "kernel_check_arm64", ["-static"])
    out = run_check([qemu, "-cpu", cpu, str(exe), "neon"])
    assert "auto selects: neon" in out, out
    for type_ in ("f32", "f16", "bf16", "q8_0", "mxfp4"):
        assert f"neon   matvec {type_}" in out, out


def test_whole_core_compiles_for_arm64_without_warnings(tmp_path: Path) -> None:
    """Every csrc/*.c with build.py's flags (plus -Werror), for arm64: the x86 build never
    compiles the NEON file's body."""
    gcc, _ = cross_tools()
    for src in sorted(CSRC.glob("*.c")):
        proc = subprocess.run(
            [gcc, "-std=c11", "-O3", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
             f"-I{CSRC}", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, f"{src.name}:\n{proc.stderr}"
