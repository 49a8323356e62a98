"""edgemoe_quantize: convert gpt-oss checkpoints to edgemoe's model.bin (docs/FORMAT.md).

Library use::

    from edgemoe_quantize import convert
    report = convert("gpt-oss-20b/", "gpt-oss-20b.bin", dense="q8_0")

Command line: ``edgemoe quantize HF_DIR OUT`` or ``python -m edgemoe_quantize HF_DIR OUT``.
"""

from __future__ import annotations

from .cli import main
from .convert import ConvertReport, convert

__all__ = ["ConvertReport", "convert", "main"]
