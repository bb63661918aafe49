"""Pydantic validation errors -> one-line messages a user can act on."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel


def format_error(err: Any, root: type[BaseModel]) -> str:
    """``yaml.path: message`` for one pydantic error of a ``root`` model."""
    loc = [p for p in err["loc"] if p not in ("function-before[_from_name()]",)]
    path = ".".join(str(p) for p in loc if not isinstance(p, int)) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = _valid_keys(root, loc[:-1])
        return f"{path}: unknown key (valid: {', '.join(valid)})"
    return f"{path}: {message(err)}"


def _valid_keys(root: type[BaseModel], loc: list[Any]) -> list[str]:
    model: Any = root
    for part in loc:
        fields: dict[str, Any] = model.model_fields
        field = fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        model = next((a for a in get_args(model) if a is not type(None)), model)  # X | None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


# pydantic error type prefix -> what the value must be (the first match wins)
_EXPECTED = (
    ("int_", "an integer"),
    ("float_", "a number"),
    ("bool_", "true or false"),
    ("list_", "a list"),
    ("string_pattern", "letters, digits, '.', '_' or '-' (usable as a folder name)"),
    ("string_", "a string"),
)


def message(err: Any) -> str:
    """The message part of one pydantic error, in the words skinsearch uses."""
    kind, ctx, got = err["type"], err.get("ctx", {}), err.get("input")
    bounds = {
        "greater_than": (">", "gt"),
        "greater_than_equal": (">=", "ge"),
        "less_than": ("<", "lt"),
        "less_than_equal": ("<=", "le"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {_bound(ctx[key])}, got {shown(got)}"
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {shown(got)}"
    for prefix, expected in _EXPECTED:
        if kind.startswith(prefix):
            return f"must be {expected}, got {shown(got)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {kind_of(got)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def kind_of(value: Any) -> str:
    """How a wrong value is named in a message: a mapping, a list, the text 'x'."""
    if value is None:
        return "nothing"
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: f"the text {shown(value)}"}
    return names.get(type(value), shown(value))


MAX_SHOWN = 60  # characters of a value quoted in a message


def shown(value: Any) -> str:
    """``repr(value)``, cut to ``MAX_SHOWN`` characters: a message quotes a value, never a
    whole document (a YAML alias can make one value megabytes long)."""
    if isinstance(value, list | dict | tuple) and len(value) > MAX_SHOWN:
        return f"{type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _bound(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def short_number(value: float) -> str:
    """A range bound as the user would write it."""
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:g}"
