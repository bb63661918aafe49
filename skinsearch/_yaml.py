"""YAML reading for search spaces: safe, strict about duplicate keys, and YAML 1.2 floats."""

from __future__ import annotations

import re
from typing import Any

import yaml

# -- YAML --------------------------------------------------------------------------------------


class UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that rejects a key given twice in one mapping instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads 1e-4 as a string; accept the exponent forms YAML 1.2 and users write.
UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def error_location(exc: yaml.YAMLError) -> str:
    """``line:column:`` of a YAML error, where PyYAML knows it."""
    mark = getattr(exc, "problem_mark", None)
    return f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""


def error_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML says is wrong, without its location block."""
    return str(getattr(exc, "problem", None) or exc).strip()
