"""cffi build script: compiles csrc/ into the extension module ``edgemoe._edgemoe``.

The cdef is read from the public header ``csrc/edgemoe.h`` (between the CDEF-BEGIN and
CDEF-END markers), so the declarations live in one place. Registered through
``cffi_modules`` in setup.py, so ``pip install .`` builds it.

Environment:
  EDGEMOE_WERROR=1    treat C warnings as errors (CI)
  EDGEMOE_DEBUG=1     -O0 -g instead of -O3
  EDGEMOE_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer (any UB aborts); load
                      with LD_PRELOAD of the compiler's libasan (tests/test_sanitizers.py)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def read_cdef() -> str:
    text = (CSRC / "edgemoe.h").read_text()
    m = re.search(r"/\* CDEF-BEGIN \*/(.*)/\* CDEF-END \*/", text, re.S)
    if not m:
        raise RuntimeError("csrc/edgemoe.h: CDEF-BEGIN/CDEF-END markers not found")
    return m.group(1)


SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer", "-g"]


def compile_args() -> list[str]:
    args = ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden", "-pthread"]
    if os.environ.get("EDGEMOE_DEBUG") == "1":
        args += ["-O0", "-g"]
    else:
        args += ["-O3"]
    if os.environ.get("EDGEMOE_WERROR") == "1":
        args.append("-Werror")
    if os.environ.get("EDGEMOE_SANITIZE") == "1":
        args += SANITIZE
    return args


def link_args() -> list[str]:
    args = ["-pthread"]   # the worker pool (csrc/pool.c)
    if os.environ.get("EDGEMOE_SANITIZE") == "1":
        args += SANITIZE
    return args


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "edgemoe._edgemoe",
    '#include "edgemoe.h"',
    sources=sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("*.c")),
    include_dirs=[str(CSRC.relative_to(ROOT))],
    extra_compile_args=compile_args(),
    libraries=["m"],
    extra_link_args=link_args(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
