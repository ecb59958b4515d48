"""The domain AST (DAST): what the frontend builds and the domain passes rewrite.

Nodes are dataclasses deriving from :class:`asp_core.ir.Node`, which gives them ``children()``,
``clone()``, structural equality and a readable ``dump`` (shown by ``asp explain``).
"""

from __future__ import annotations

from dataclasses import dataclass

from asp_core.ir import Node

__all__ = ["Param", "Num", "Bin", "Neg", "Fn", "Map", "FUNCTIONS", "OPERATORS"]

#: Binary operators of the DSL.
OPERATORS = ("+", "-", "*", "/")
#: Functions of the DSL: builtins ``abs``, ``min``, ``max`` and ``math.sqrt``.
FUNCTIONS = ("abs", "min", "max", "sqrt")


@dataclass
class Param(Node):
    """The kernel's ``index``-th parameter (an element of the ``index``-th array)."""

    index: int


@dataclass
class Num(Node):
    """A numeric literal: a Python int (folded exactly, as Python computes with it) or float."""

    value: int | float


@dataclass
class Bin(Node):
    op: str
    left: Node
    right: Node


@dataclass
class Neg(Node):
    operand: Node


@dataclass
class Fn(Node):
    name: str
    args: list[Node]


@dataclass
class Map(Node):
    """The whole kernel: ``nparams`` arrays in, one array of ``body`` out."""

    nparams: int
    body: Node
