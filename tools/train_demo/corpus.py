"""The demo model's corpus: CPython's own documentation text, as installed with Python.

Two sources, both under the Python Software Foundation License (PSF-2.0), present on every
CPython installation and read without the network:

* ``pydoc_data.topics``: the Language Reference and Library Reference sections that
  ``help()`` shows (plain text);
* the docstrings of the standard library's modules, classes and functions (``ast`` over the
  ``.py`` files of the stdlib directory; tests, ``idlelib`` and ``site-packages`` skipped).

Each becomes a document; a document goes to the held-out set when the SHA-256 of its name
falls in the held-out fraction, so the split does not depend on file order. The same
documents also give chat examples (``What does json.dumps do?`` answered by the first
paragraph of its docstring), rendered in harmony by edgemoe's own renderer so that the
model learns exactly the turn structure ``edgemoe chat`` produces.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgemoe.harmony import render_chat

HELDOUT_PER_MILLE = 40
SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo"}


@dataclass(frozen=True)
class Document:
    """One text: a pydoc topic or a docstring. ``subject`` is what a question asks about."""

    name: str       # unique, e.g. "topic:assert" or "json.dumps"
    subject: str    # e.g. "the assert statement" or "json.dumps"
    text: str

    @property
    def heldout(self) -> bool:
        digest = hashlib.sha256(self.name.encode()).digest()
        return int.from_bytes(digest[:4], "big") % 1000 < HELDOUT_PER_MILLE


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def topic_documents() -> Iterator[Document]:
    """pydoc's help topics, in sorted order."""
    import pydoc_data.topics as topics

    for key in sorted(topics.topics):
        text = _clean(topics.topics[key])
        if len(text) > 200:
            yield Document(f"topic:{key}", key.replace("-", " "), text)


def _stdlib_files() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if SKIP_PARTS.intersection(rel.parts) or any(p.startswith("_") for p in rel.parts[:-1]):
            continue
        files.append(path)
    return files


def docstring_documents() -> Iterator[Document]:
    """Docstrings of public stdlib modules, classes and functions, in file order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    for path in _stdlib_files():
        rel = path.relative_to(lib).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if not parts or parts[-1].startswith("_"):
            continue
        module = ".".join(parts)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        yield from _walk(tree, module)


def _walk(node: ast.AST, qualname: str) -> Iterator[Document]:
    doc = ast.get_docstring(node, clean=True) if isinstance(
        node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) else None
    if doc and len(doc) >= 60:
        yield Document(qualname, qualname, _clean(doc))
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if child.name.startswith("_"):
                continue
            yield from _walk(child, f"{qualname}.{child.name}")


def documents() -> list[Document]:
    """Every document, deduplicated by text (first occurrence kept), in a fixed order."""
    seen: set[str] = set()
    out = []
    for doc in [*topic_documents(), *docstring_documents()]:
        if doc.text not in seen:
            seen.add(doc.text)
            out.append(doc)
    return out


QUESTIONS = (
    "What does {s} do?",
    "Explain {s}.",
    "Tell me about {s}.",
    "Describe {s} briefly.",
    "How does {s} work?",
    "What is {s}?",
)

REASONING = (
    "The user asks about {s}. I will summarize what the documentation says.",
    "Question about {s}. Answer from the docs, briefly.",
    "They want to know about {s}. Give the short description.",
)


def first_paragraph(text: str, limit: int = 600) -> str:
    para = text.split("\n\n", 1)[0].strip()
    if len(para) > limit:
        cut = para.rfind(". ", 0, limit)
        para = para[: cut + 1] if cut > 100 else para[:limit]
    return para


def chat_example(doc: Document, rng: random.Random) -> str:
    """A harmony conversation about ``doc``: system + user question, then the assistant's
    analysis and final answer, ending in ``<|return|>`` (special tokens as their names)."""
    subject = doc.subject
    question = rng.choice(QUESTIONS).format(s=subject)
    effort = rng.choice(("low", "medium", "high"))
    prompt = render_chat([{"role": "user", "content": question}], reasoning_effort=effort)
    answer = first_paragraph(doc.text)
    reasoning = rng.choice(REASONING).format(s=subject)
    return (prompt + "<|channel|>analysis<|message|>" + reasoning + "<|end|>"
            + "<|start|>assistant<|channel|>final<|message|>" + answer + "<|return|>")


def corpus_text(docs: list[Document]) -> str:
    """Documents joined as plain text (for the tokenizer and the held-out file)."""
    return "\n\n".join(d.text for d in docs)
