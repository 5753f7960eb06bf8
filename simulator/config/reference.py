"""Generate docs/scenario.md from the pydantic scenario schema:
`python -m simulator.config.reference`."""

from __future__ import annotations

import sys
import typing

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from simulator.config.scenario import Scenario

HEADER = """# Scenario reference

Generated from `simulator/config/scenario.py` by `python -m simulator.config.reference > \
docs/scenario.md`
(a test checks it is current). Unknown fields are errors. Sizes are counts, times are simulated
seconds, rates per second. Any field can be overridden with `fedfleet run FILE --set path=value`.

"""


def _type_name(ann: object) -> str:
    if "Annotated" in str(ann):  # constrained items (plugin params keys, workload names): the base
        if typing.get_origin(ann) is typing.Annotated:
            return _type_name(typing.get_args(ann)[0])
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin in (dict, tuple, list) and args:
            inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
            return f"{origin.__name__}[{inner}]"
    s = str(ann).replace("typing.", "")
    for junk in ("<class '", "'>", "simulator.config.scenario."):
        s = s.replace(junk, "")
    return s


def _constraints(f: FieldInfo) -> str:
    out = []
    for m in f.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"),
                          ("min_length", "min length"), ("max_length", "max length")):
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
        if getattr(m, "pattern", None):
            out.append(f"pattern `{m.pattern}`")
    return ", ".join(out)


def _default(f: FieldInfo) -> str:
    if f.is_required():
        return "**required**"
    d = f.default
    if isinstance(d, BaseModel):
        return "(section)"
    if f.default_factory is not None:
        return repr(f.default_factory())  # type: ignore[call-arg]
    return repr(d)


def _models(ann: object) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    found = []
    for a in typing.get_args(ann):
        found.extend(_models(a))
    return found


def render(model: type[BaseModel] = Scenario, prefix: str = "", seen: set | None = None) -> str:
    seen = set() if seen is None else seen
    lines = [f"## `{prefix or 'top level'}`\n"]
    if model.__doc__ and model is not Scenario:
        lines.append(" ".join(model.__doc__.split()) + "\n")
    lines.append("| field | type | default | allowed | meaning |")
    lines.append("|---|---|---|---|---|")
    subs = []
    for name, f in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        lines.append(f"| `{path}` | `{_type_name(f.annotation)}` | {_default(f)} | "
                     f"{_constraints(f)} | {f.description or ''} |")
        for sub in _models(f.annotation):
            if sub not in seen:
                seen.add(sub)
                subs.append((sub, path + ("[]" if "tuple" in str(f.annotation) else "")))
    out = "\n".join(lines) + "\n\n"
    for sub, path in subs:
        out += render(sub, path, seen)
    return out


def main() -> int:
    sys.stdout.write(HEADER + render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
