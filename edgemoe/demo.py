"""The demo model bundled with the package.

A small gpt-oss (4 layers, 16 experts top-4, 12.4 M parameters) trained on CPython's own
documentation by ``tools/train_demo/`` and converted by ``edgemoe quantize``: MXFP4 experts,
Q8_0 dense weights, its own 4,089-token BPE tokenizer with harmony's special tokens. It runs
the whole pipeline in a second on any machine and writes Python-documentation-flavoured
English; it knows nothing else. ``edgemoe run`` uses it when no MODEL is given.
"""

from __future__ import annotations

from pathlib import Path

from edgemoe.errors import ModelIOError

__all__ = ["DEMO_HELDOUT", "DEMO_MODEL", "demo_model_path"]

_DATA = Path(__file__).resolve().parent / "data"

#: The bundled model.bin.
DEMO_MODEL = _DATA / "demo.bin"

#: Text the demo model never saw in training (its corpus's held-out documents).
DEMO_HELDOUT = _DATA / "heldout.txt"


def demo_model_path() -> Path:
    """Path of the bundled demo model.

    Raises:
        ModelIOError: the package was installed without it.
    """
    if not DEMO_MODEL.is_file():
        raise ModelIOError(f"{DEMO_MODEL}: the bundled demo model is missing from this install")
    return DEMO_MODEL
