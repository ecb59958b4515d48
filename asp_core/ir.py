"""IR node machinery shared by domain ASTs and the platform AST: dataclass nodes (structural
equality, ``clone``), a :class:`Visitor` dispatching on class names and a :class:`Transformer`.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterator, TypeVar

__all__ = ["Node", "Visitor", "Transformer", "walk", "dump"]

N = TypeVar("N", bound="Node")


class Node:
    """Base of IR nodes (subclasses are dataclasses)."""

    def fields(self, compared: bool = False) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of each field; ``compared``: only those equality compares (not a
        statement's source ``line``)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.compare or not compared:
                yield f.name, getattr(self, f.name)

    def children(self) -> list[Node]:
        """Direct child nodes, in field order (lists and tuples flattened)."""
        out: list[Node] = []
        for _, value in self.fields():
            if isinstance(value, Node):
                out.append(value)
            elif isinstance(value, (list, tuple)):
                out.extend(v for v in value if isinstance(v, Node))
        return out

    def clone(self: N) -> N:
        return copy.deepcopy(self)

    def replace(self: N, **changes: Any) -> N:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(reversed(cur.children()))


class Visitor:
    """Calls ``visit_<ClassName>`` or :meth:`generic_visit`, which visits the children."""

    def visit(self, node: Any) -> Any:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            return self.generic_visit(node)
        return method(node)

    def generic_visit(self, node: Any) -> Any:
        if isinstance(node, Node):
            for child in node.children():
                self.visit(child)
        return None


class Transformer(Visitor):
    """Returns a new tree; ``visit_*`` methods return the replacement node (or a list in lists)."""

    def generic_visit(self, node: Any) -> Any:
        if not isinstance(node, Node):
            return node
        changes = {name: new for name, value in node.fields()
                   if (new := self._transform_value(value)) is not value}
        return dataclasses.replace(node, **changes) if changes else node  # type: ignore

    def _transform_value(self, value: Any) -> Any:
        if isinstance(value, Node):
            return self.visit(value)
        if isinstance(value, (list, tuple)) and any(isinstance(v, Node) for v in value):
            out: list[Any] = []
            changed = False
            for item in value:
                new = self.visit(item) if isinstance(item, Node) else item
                changed |= new is not item
                if isinstance(new, list) and isinstance(item, Node):
                    out.extend(new)
                elif new is not None:
                    out.append(new)
                else:
                    changed = True
            if not changed:
                return value
            return type(value)(out) if isinstance(value, tuple) else out
        return value


def dump(node: Any, indent: int = 0, compared: bool = False) -> str:
    """An indented, readable rendering of a tree (what ``asp explain`` prints for a DAST);
    ``compared``: of the fields equality compares only, what the tree computes (a comment
    added to a kernel moves its statements' lines, not its stored tuning winner)."""
    pad = "  " * indent
    if isinstance(node, Node):
        simple: list[tuple[str, Any]] = []
        nested: list[tuple[str, Any]] = []
        for k, v in node.fields(compared):
            is_nested = isinstance(v, Node) or (
                isinstance(v, (list, tuple)) and any(isinstance(x, Node) for x in v))
            (nested if is_nested else simple).append((k, v))
        head = f"{pad}{type(node).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in simple) + ")"
        lines = [head]
        for k, v in nested:
            if isinstance(v, Node):
                lines.append(f"{pad}  {k}:")
                lines.append(dump(v, indent + 2, compared))
            else:
                lines.append(f"{pad}  {k}: [")
                lines.extend(dump(x, indent + 2, compared) for x in v)
                lines.append(f"{pad}  ]")
        return "\n".join(lines)
    return f"{pad}{node!r}"
