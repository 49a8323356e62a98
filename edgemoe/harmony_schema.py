"""Render function tools for the harmony developer message (``namespace functions { ... }``).

gpt-oss was trained on tool definitions written as TypeScript-like types derived from each
tool's JSON-schema parameters. This module produces that text exactly as openai-harmony
0.0.8 does, including its quirks (an object's description goes before its ``{``, string
defaults are quoted unless the property is an enum, ``integer`` becomes ``number``, JSON
values in comments are printed as compact JSON the way Rust's serde_json prints them).
Property order is the schema's insertion order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["FunctionTool", "json_compact", "normalize_tools", "render_tools_section"]

_MISSING = object()


class FunctionTool:
    """One function tool: name, description (may be empty) and JSON-schema parameters."""

    __slots__ = ("description", "name", "parameters")

    def __init__(self, name: str, description: str = "", parameters: Any = None) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


def normalize_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[FunctionTool]:
    """Accept OpenAI-style tools and return :class:`FunctionTool` objects.

    Each entry may be ``{"type": "function", "function": {"name", "description",
    "parameters"}}`` or the inner ``{"name", "description", "parameters"}`` alone.
    ``parameters`` may be absent or None (a tool without arguments).

    Raises:
        ValueError: an entry that is not a function tool or has no name.
    """
    out: list[FunctionTool] = []
    for i, tool in enumerate(tools or ()):
        if isinstance(tool, FunctionTool):
            out.append(tool)
            continue
        if not isinstance(tool, Mapping):
            raise ValueError(f"tools[{i}] is not a mapping")
        kind = tool.get("type", "function")
        if kind != "function":
            raise ValueError(f"tools[{i}]: only function tools are supported, got {kind!r}")
        fn = tool.get("function", tool)
        if not isinstance(fn, Mapping):
            raise ValueError(f"tools[{i}].function is not a mapping")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"tools[{i}] has no function name")
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise ValueError(f"tools[{i}] ({name}): description is not a string")
        out.append(FunctionTool(name, description, fn.get("parameters")))
    return out


# --------------------------------------------------------------------------------------
# JSON values as serde_json prints them
# --------------------------------------------------------------------------------------


def _format_float(x: float) -> str:
    """A finite float as Rust's ryu prints it (shortest digits; ``1e20``, ``1e-7``, ``0.5``)."""
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign, digit_tuple, exp = Decimal(repr(x)).as_tuple()
    assert isinstance(exp, int)
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0")
    exp += len(all_digits) - len(digits)
    # now x == digits * 10**exp
    n = len(digits)
    kk = n + exp  # position of the decimal point
    if 0 <= exp and kk <= 16:
        text = digits + "0" * exp + ".0"
    elif 0 < kk <= 16:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * (-kk) + digits
    elif n == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return ("-" if sign else "") + text


def json_compact(value: Any) -> str:
    """Compact JSON (no spaces), numbers and escapes as serde_json prints them.

    Python ints outside the 64-bit range become floats, as serde_json parses them.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return str(value)
        return _format_float(float(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            return "null"
        return _format_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = (f"{json_compact(str(k))}:{json_compact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_compact(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


# --------------------------------------------------------------------------------------
# JSON schema -> TypeScript-like type
# --------------------------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` when obj is a mapping that has key, else ``_MISSING`` (JSON ``get``)."""
    if isinstance(obj, Mapping) and key in obj:
        return obj[key]
    return _MISSING


def _get_str(obj: Any, key: str) -> str | None:
    value = _get(obj, key)
    return value if isinstance(value, str) else None


def _is_enum(schema: Any) -> bool:
    value = _get(schema, "enum")
    return isinstance(value, list) and len(value) > 0


def _is_nullable(schema: Any) -> bool:
    return _get(schema, "nullable") is True


def _default_comment(schema: Any, default: Any, quote_enum_string: bool) -> str:
    """``default: ...`` text. Strings are quoted raw, except for enums, where openai-harmony
    prints them raw (property level) or as JSON (inside a top-level oneOf)."""
    if isinstance(default, str):
        if not _is_enum(schema):
            return f'default: "{default}"'
        return f"default: {json_compact(default) if quote_enum_string else default}"
    return f"default: {json_compact(default)}"


def _with_null(schema: Any, type_str: str) -> str:
    if _is_nullable(schema) and "null" not in type_str:
        return f"{type_str} | null"
    return type_str


def _rust_lines(text: str) -> list[str]:
    """Split like Rust's ``str::lines``: on ``\\n``, dropping one trailing ``\\r`` per line
    and the empty piece after a final newline."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _one_of_top(variants: list[Any], indent: str) -> str:
    out: list[str] = []
    for variant in variants:
        out.append(f"\n{indent} | ")
        out.append(_with_null(variant, schema_to_typescript(variant, indent + "   ")))
        comments: list[str] = []
        desc = _get_str(variant, "description")
        if desc is not None:
            comments.append(desc)
        default = _get(variant, "default")
        if default is not _MISSING:
            comments.append(_default_comment(variant, default, quote_enum_string=True))
        if comments:
            out.append(" // " + " ".join(comments))
    return "".join(out)


def _one_of_property(
    key: str, val: Mapping[str, Any], variants: list[Any], optional: str, indent: str
) -> str:
    out: list[str] = []
    prop_desc = _get_str(val, "description")
    first_desc = _get_str(variants[0], "description") if variants else None
    desc_above = prop_desc is not None and prop_desc != first_desc
    if desc_above:
        out.append(f"{indent}// {prop_desc}\n")
    default = _get(val, "default")
    if default is not _MISSING:
        out.append(f"{indent}// {_default_comment(val, default, quote_enum_string=False)}\n")
    out.append(f"{indent}{key}{optional}:\n")
    for i, variant in enumerate(variants):
        out.append(f"{indent} | ")
        out.append(_with_null(variant, schema_to_typescript(variant, indent + "   ")))
        comments: list[str] = []
        if not (i == 0 and desc_above):
            desc = _get_str(variant, "description")
            if desc is not None and desc != prop_desc:
                comments.append(desc)
        v_default = _get(variant, "default")
        if v_default is not _MISSING:
            comments.append(_default_comment(variant, v_default, quote_enum_string=False))
        if comments:
            out.append(" // " + " ".join(comments))
        out.append("\n")
    out.append(f"{indent},\n")
    return "".join(out)


def _object(schema: Mapping[str, Any], indent: str) -> str:
    out: list[str] = []
    desc = _get_str(schema, "description")
    if desc is not None:
        out.append(f"{indent}// {desc}\n")
    out.append("{\n")
    props = _get(schema, "properties")
    if isinstance(props, Mapping):
        req = _get(schema, "required")
        required = {r for r in req if isinstance(r, str)} if isinstance(req, list) else set()
        for key, val in props.items():
            optional = "" if key in required else "?"
            title = _get_str(val, "title")
            if title is not None:
                out.append(f"{indent}// {title}\n{indent}//\n")
            one_of = _get(val, "oneOf")
            if one_of is _MISSING:
                prop_desc = _get_str(val, "description")
                if prop_desc is not None:
                    out.append(f"{indent}// {prop_desc}\n")
            examples = _get(val, "examples")
            if isinstance(examples, list) and examples:
                out.append(f"{indent}// Examples:\n")
                out.extend(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
            if isinstance(one_of, list):
                out.append(_one_of_property(key, val, one_of, optional, indent))
                continue
            out.append(f"{indent}{key}{optional}: ")
            out.append(_with_null(val, schema_to_typescript(val, indent + "    ")))
            out.append(",")
            if one_of is _MISSING:
                default = _get(val, "default")
                if default is not _MISSING:
                    out.append(f" // {_default_comment(val, default, quote_enum_string=False)}")
            out.append("\n")
    out.append(f"{indent}}}")
    return "".join(out)


def schema_to_typescript(schema: Any, indent: str = "") -> str:
    """A JSON schema as the TypeScript-like type openai-harmony renders for it."""
    one_of = _get(schema, "oneOf")
    if isinstance(one_of, list):
        return _one_of_top(one_of, indent)
    ty = _get(schema, "type")
    if isinstance(ty, list):
        names = ["number" if t == "integer" else t for t in ty if isinstance(t, str)]
        return " | ".join(names) if names else "any"
    if not isinstance(ty, str):
        return "any"
    if ty == "object":
        return _object(schema, indent)
    if ty == "string":
        values = _get(schema, "enum")
        if isinstance(values, list):
            names = [f'"{v}"' for v in values if isinstance(v, str)]
            if names:
                return " | ".join(names)
        return "string"
    if ty in ("number", "integer"):
        return "number"
    if ty == "boolean":
        return "boolean"
    if ty == "array":
        items = _get(schema, "items")
        if items is _MISSING:
            return "Array<any>"
        return f"{schema_to_typescript(items, indent)}[]"
    return "any"


def render_tools_section(tools: Sequence[FunctionTool], namespace: str = "functions") -> str:
    """The ``# Tools`` section of the developer message for function tools.

    Returns an empty string when there are no tools.
    """
    if not tools:
        return ""
    body = [f"## {namespace}\n", f"namespace {namespace} {{\n"]
    for tool in tools:
        body.extend(f"// {line}" for line in _rust_lines(tool.description))
        if tool.parameters is not None:
            params = schema_to_typescript(tool.parameters)
            body.append(f"type {tool.name} = (_: {params}) => any;\n")
        else:
            body.append(f"type {tool.name} = () => any;\n")
    body.append(f"}} // namespace {namespace}")
    return "# Tools\n\n" + "\n".join(body)
