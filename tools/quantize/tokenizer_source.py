"""Find the tokenizer to embed: ``--tokenizer PATH`` or the checkpoint's tokenizer.json.

The parsing and verification live in ``edgemoe.tokenizer`` (imported lazily, so a
checkpoint without a tokenizer converts even where that module is unavailable).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from edgemoe.errors import ConversionError, EdgemoeError


def _module(what: Path) -> ModuleType:
    try:
        return importlib.import_module("edgemoe.tokenizer")
    except ImportError as e:
        raise ConversionError(f"{what}: cannot read the tokenizer: edgemoe.tokenizer is "
                              f"unavailable ({e}); pass --no-tokenizer to convert without it"
                              ) from e


def find_tokenizer(hf_dir: Path, override: Path | None) -> Any | None:
    """The tokenizer spec to embed, or None if there is none.

    ``override`` may be a directory holding tokenizer.json, a tokenizer.json file, or a
    ``.tiktoken`` / ``.tiktoken.gz`` BPE file. Without it, whatever
    ``edgemoe.tokenizer.spec_from_hf_dir(hf_dir)`` finds (tokenizer.json, else a
    ``*.tiktoken[.gz]`` file) is used.

    Raises:
        ConversionError: the tokenizer cannot be read or fails verification.
    """
    if override is None:
        try:
            importlib.import_module("edgemoe.tokenizer")
        except ImportError:
            if not (hf_dir / "tokenizer.json").is_file():
                return None  # nothing to embed anyway
        return _load(hf_dir, lambda m: m.spec_from_hf_dir(hf_dir))
    if not override.exists():
        raise ConversionError(f"{override}: tokenizer file does not exist")
    if override.is_dir():
        spec = _load(override, lambda m: m.spec_from_hf_dir(override))
        if spec is None:
            raise ConversionError(f"{override}: no tokenizer.json in this directory")
        return spec
    if override.suffix == ".json":
        def from_json(m: ModuleType) -> Any:
            fn = getattr(m, "spec_from_tokenizer_json", None)
            if fn is not None:
                return fn(override)
            if override.name != "tokenizer.json":
                raise ConversionError(f"{override}: name the file tokenizer.json")
            return m.spec_from_hf_dir(override.parent)
        return _load(override, from_json)
    return _load(override, lambda m: m.spec_from_tiktoken_file(override))


def _load(path: Path, fn: Any) -> Any:
    mod = _module(path)
    try:
        return fn(mod)
    except ConversionError:
        raise
    except (EdgemoeError, OSError, ValueError) as e:
        raise ConversionError(f"{path}: cannot use the tokenizer: {e}") from e
