"""YAML reading for search spaces: safe, strict about duplicate keys, YAML 1.2 floats, and
bounded: a document whose aliases expand past ``MAX_NODES`` nodes (a "billion laughs" file of a
few hundred bytes) or that nests deeper than ``MAX_DEPTH`` is refused before it is built."""

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


MAX_NODES = 100_000  # nodes after aliases are expanded; real search spaces have a few hundred
MAX_DEPTH = 64  # levels of nesting; real search spaces have four or five


class YamlTooLarge(ValueError):
    """A YAML document past ``MAX_NODES`` or ``MAX_DEPTH``."""


def load_yaml(text: str) -> Any:
    """Parse one YAML document with ``UniqueKeyLoader``, refusing one that is too large.

    Raises:
        yaml.YAMLError: for text that is not YAML.
        YamlTooLarge: for a document past the limits (aliases counted as often as used).
    """
    loader = UniqueKeyLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # PyYAML composes nested collections recursively
            raise YamlTooLarge(f"is nested deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(root: yaml.Node) -> None:
    # every use of an alias is counted: that is what building the document would cost
    count, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise YamlTooLarge(
                f"expands to more than {MAX_NODES:,} values (through aliases); write the values out"
            )
        if depth > MAX_DEPTH:
            raise YamlTooLarge(f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            stack += [(part, depth + 1) for pair in node.value for part in pair]


def error_location(exc: yaml.YAMLError) -> str:
    """``line:column:`` of a YAML error, where PyYAML knows it."""
    mark = getattr(exc, "problem_mark", None)
    return f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""


def error_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML says is wrong, without its location block."""
    return str(getattr(exc, "problem", None) or exc).strip()
