"""``python -m edgemoe_quantize HF_DIR OUT``."""

from .cli import main

raise SystemExit(main())
