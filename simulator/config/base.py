"""Base class of every scenario section: frozen, unknown keys forbidden, no booleans as numbers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationInfo, field_validator

# A part's name (model.kind, data.dataset, selection.policy, ...): looked up in the registries of
# simulator/core/registry.py after plugins are imported; the pattern keeps it printable and short.
# Dots allow a selection policy's class path (``mypkg.selectors.Mine``).
PART_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"
# ``params`` of a plugin part (model.params, data.params, selection.params): a mapping from
# parameter names (identifiers, so every error line stays one printable line) to values, which the
# part's own params model validates.
PluginParams = dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
                    Any]


def _bool_for_number(v: Any, annotation: Any) -> bool:
    """True when ``v`` is a YAML boolean (or holds one) where only numbers are allowed."""
    import typing

    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple:
        items = set(args) - {Ellipsis}
        return (isinstance(v, (list, tuple)) and bool(items) and items <= {int, float}
                and any(isinstance(x, bool) for x in v))
    kinds = (set(args) - {type(None)}) if args else {annotation}
    return isinstance(v, bool) and bool(kinds) and kinds <= {int, float}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        # YAML 1.1 reads yes/no/on/off as booleans, which pydantic would quietly take as 1/0.
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bool_for_number(v, field.annotation):
            raise ValueError("expected a number, got true/false (YAML reads yes/no/on/off as "
                             "booleans)")
        return v
