"""The API reference, docs/api.md, written from the docstrings and the config fields:

    python -m jgrok.docs > docs/api.md

`tests/test_api.py` checks that the committed page equals what this writes.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any

import jgrok
from jgrok.api import ALIASES
from jgrok.config import ExperimentConfig

HEADER = """# jgrok Python API

Generated from the docstrings by `python -m jgrok.docs > docs/api.md`; README.md's "Python
API" section has a runnable example. Every name below is exported from `jgrok`.
"""


def _annotation(a: Any) -> str:
    return a if isinstance(a, str) else getattr(a, "__name__", repr(a))


def _default(v: Any) -> str:
    if dataclasses.is_dataclass(v):
        return f"{type(v).__name__}()"
    return v.__name__ if callable(v) else repr(v)


def signature(obj: Any) -> str:
    """`name(arg: type = default, ...) -> type` as the source writes it."""
    sig = inspect.signature(obj)
    parts, star = [], False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = ("**" if p.kind is p.VAR_KEYWORD else "*" if p.kind is p.VAR_POSITIONAL
                else "") + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {_default(p.default)}"
        parts.append(text)
    out = f"{obj.__name__}({', '.join(parts)})"
    if sig.return_annotation is not sig.empty:
        out += f" -> {_annotation(sig.return_annotation)}"
    return out


def _entry(level: str, title: str, doc: str | None) -> str:
    return f"{level} `{title}`\n\n{inspect.cleandoc(doc or '')}\n"


def _class(name: str, cls: type) -> list[str]:
    own = cls.__dict__.get("__doc__")
    out = [_entry("##", f"class {name}", own)]
    if dataclasses.is_dataclass(cls):
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        out.append(f"Fields: {fields}.\n")
    for attr, member in cls.__dict__.items():
        if attr.startswith("_") or not inspect.isfunction(member):
            continue
        out.append(_entry("###", f"{name}.{signature(member)}", member.__doc__))
    return out


def config_fields() -> str:
    """The fields of `ExperimentConfig` (the keywords of `make_config`) as a Markdown table."""
    aliases = {target: alias for alias, target in ALIASES.items()}
    rows = ["| keyword | field | default | what |", "|---|---|---|---|"]
    for section in dataclasses.fields(ExperimentConfig):
        for f in dataclasses.fields(section.default.__class__):
            key = aliases.get((section.name, f.name), f.name)
            what = f.metadata.get("help", "").replace("|", "\\|").replace("<", "\\<")
            rows.append(f"| `{key}` | `{section.name}.{f.name}` | `{f.default!r}` | {what} |")
    return "\n".join(rows) + "\n"


#: names `jgrok` re-exports from other modules: a pointer here, the reference in the module
ELSEWHERE = {
    "ExperimentConfig": "the five frozen config sections (`jgrok.config`); `make_config` builds "
                        "one, its fields are under *Config fields* below",
    "PhaseThresholds": "every number of the phase rules (`jgrok.analysis.phases`; BUILD.md, "
                       "*Phase rules*); `Run.thresholds`",
    "ConfigError": "the one exception for bad input, with a one-line message (`jgrok.errors`)",
}


def page() -> str:
    """The whole of docs/api.md."""
    out = [HEADER]
    for name in jgrok.__all__:
        obj = getattr(jgrok, name)
        if name == "__version__":
            continue
        if name in ELSEWHERE:
            out.append(f"## `class {name}`\n\n{ELSEWHERE[name][0].upper()}"
                       f"{ELSEWHERE[name][1:]}.\n")
        elif inspect.isclass(obj):
            out += _class(name, obj)
        else:
            out.append(_entry("##", signature(obj), obj.__doc__))
    out.append("## Config fields\n\nThe keywords of `make_config` (and the command-line flags "
               "of the same names), by config section, with the dataclasses' defaults (a "
               "preset sets its own).\n\n" + config_fields())
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(page())
