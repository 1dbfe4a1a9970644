"""Griffe extension for the documentation site: render contdepth's prose docstrings as Markdown.

The docstrings are short prose in reStructuredText habits (no Args:/Returns: sections). Two
rewrites, applied to the text mkdocstrings renders (the library's files are not touched):

* Sphinx roles ``:func:`~contdepth.solve.solve``` become code spans (`solve`);
* a line ``name: text`` (or ``a, b: text``) that starts at the docstring's margin and names
  parameters of the documented function or class, with its indented continuation lines,
  becomes a bullet ``- `name`: text`` so that argument descriptions render as a list.
"""
from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc|py:\w+):`(~?)([^`]+)`")
_ARG = re.compile(r"^([A-Za-z_]\w*(?:, ?[A-Za-z_]\w*)*): (.*)$")


def _role(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _parameter_names(obj: griffe.Object) -> set[str]:
    try:
        params = obj.parameters  # functions, and classes through __init__
    except Exception:  # noqa: BLE001 - modules, attributes, classes without a signature
        return set()
    return {p.name for p in params} if params else set()


def rewrite(text: str, params: set[str]) -> str:
    """The Markdown text mkdocstrings renders for one docstring."""
    text = _ROLE.sub(_role, text)
    if not params:
        return text
    out: list[str] = []
    in_item = False
    for line in text.split("\n"):
        match = _ARG.match(line)
        if match and all(name.strip() in params for name in match.group(1).split(",")):
            if not in_item and out and out[-1].strip():
                out.append("")  # a list after a paragraph needs a blank line
            names = ", ".join(f"`{name.strip()}`" for name in match.group(1).split(","))
            out.append(f"- {names}: {match.group(2)}")
            in_item = True
        elif in_item and line.startswith((" ", "\t")) and line.strip():
            out.append("    " + line.strip())
        else:
            if in_item and line.strip():
                out.append("")  # the paragraph after a list
            in_item = False
            out.append(line)
    return "\n".join(out)


class ProseDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, _parameter_names(obj))
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
