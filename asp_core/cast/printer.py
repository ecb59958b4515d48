"""Print platform-AST trees as C or CUDA source, binary operations fully parenthesised (C then
evaluates in the tree's order); anything not lowered to the PAST is a ``TypeError``."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from asp_core.cast import nodes as n

__all__ = ["CPrinter", "CudaPrinter", "print_c", "print_cuda", "format_float"]


def format_float(value: float | np.floating, single: bool = False) -> str:
    """A C literal that parses back to exactly ``value`` (shortest round-trip repr);
    ``single``: to ``value`` rounded to float32 as NumPy rounds it, in float32's shortest
    repr (the double's digits with an ``f`` suffix rounded 1 + 2**-24 up to 1 + 2**-23,
    NumPy's float32 of it is 1.0). Infinities and NaNs (sign kept) are the compiler builtins
    of the constant's type, which gcc, clang and nvcc know without ``math.h``."""
    if single:
        with np.errstate(over="ignore"):   # beyond float32: inf, as NumPy's cast
            value = np.float32(value)  # str() gives its digits
    if not math.isfinite(value):
        suffix = "f" if single else ""
        text = _nan(value, single) if math.isnan(value) else f"__builtin_inf{suffix}()"
        return f"(-{text})" if math.copysign(1.0, value) < 0 else text
    text = str(value) if single else repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    if single:
        text += "f"
    return f"({text})" if text.startswith("-") else text


def _nan(value: float | np.floating, single: bool) -> str:
    """The builtin making NaN ``value`` with its payload (the mantissa below the quiet bit) and
    kind: a payload read from a file or made with ``struct`` reaches results as Python gives
    it, where ``__builtin_nan("")`` made every NaN the default one (nvcc makes a signalling
    one quiet: CUDA keeps the payload only)."""
    bits = int(np.array(value, np.float32 if single else np.float64).view(
        np.uint32 if single else np.uint64))
    quiet = 1 << (22 if single else 51)
    payload = bits & (quiet - 1)
    kind = "nan" if bits & quiet else "nans"
    return f"__builtin_{kind}{'f' if single else ''}(\"{hex(payload) if payload else ''}\")"


def _integer(v: int) -> str:
    """An integer literal of exactly ``v``: int64 (``LL``) or uint64 (``ULL``) beyond int32,
    negative ones bracketed (``-(-5)`` printed ``--5``, a decrement), the least int64 as an
    expression (``9223372036854775808LL`` is out of range before its minus applies)."""
    if not -2**63 <= v < 2**64:
        raise ValueError(f"integer constant {v} does not fit 64 bits (C would wrap it)")
    if v == -2**63:
        return "(-9223372036854775807LL - 1)"
    text = str(v) if -2**31 <= v < 2**31 else f"{v}LL" if v < 2**63 else f"{v}ULL"
    return f"({text})" if v < 0 else text


def comment_lines(text: str) -> list[str]:
    """``text`` as lines safe inside ``/* ... */``, one comment each (a trailing backslash or
    ``??/`` cannot splice in the next), with ``*/`` and the trigraph broken up."""
    return [line.replace("??/", "?? /").replace("*/", "* /") for line in text.splitlines()] \
        or [""]


class CPrinter:
    """C99/C11 printer; subclasses add dialects (CUDA)."""

    indent_unit = "    "

    def __init__(self) -> None:
        self._level = 0

    # -- entry ----------------------------------------------------------------------------------
    def print(self, node: n.Node) -> str:
        if isinstance(node, n.Expr):
            return self.expr(node)
        return "\n".join(self.lines(node)) + "\n"

    def lines(self, node: object) -> list[str]:
        return self._method("_s_", node, "statement")(node)

    def expr(self, node: object) -> str:
        return self._method("_e_", node, "expression")(node)

    def _method(self, prefix: str, node: object, what: str) -> Any:
        method = getattr(self, prefix + type(node).__name__, None)
        if method is None or not isinstance(node, n.Node):
            raise TypeError(f"cannot print {type(node).__name__}: not a lowered platform-AST "
                            f"{what} (lower domain nodes to asp_core.cast nodes first)")
        return method

    def _pad(self, text: str) -> str:
        return self.indent_unit * self._level + text

    # -- types --------------------------------------------------------------------------------
    def ctype(self, t: n.CType, name: str = "") -> str:
        parts = list(t.qualifiers)
        if t.const and t.pointer == 0:
            parts.append("const")
        parts.append(t.base)
        text = " ".join(parts)
        if t.pointer:
            if t.const:
                text = "const " + text
            text += " " + "*" * t.pointer
            if t.restrict:
                text += self.restrict_keyword + " "
        elif name:
            text += " "
        return (text + name).rstrip() if name else text.rstrip()

    restrict_keyword = "restrict"

    # -- expressions --------------------------------------------------------------------------
    def _e_Name(self, e: n.Name) -> str:
        return e.id

    def _e_Constant(self, e: n.Constant) -> str:
        v = e.value
        floating = e.ctype is not None and e.ctype.base in ("float", "double")
        if isinstance(v, (bool, np.bool_)):
            return "1" if v else "0"
        if not floating and (isinstance(v, (int, np.integer)) or e.ctype is not None):
            if not isinstance(v, (int, np.integer)) and not float(v).is_integer():
                raise ValueError(f"constant {v!r} is not an integer, but its ctype is "
                                 f"{e.ctype.base!r}")   # type: ignore[union-attr]
            return _integer(int(v))
        # a NumPy float as it is: float() of a float32 signalling NaN makes it quiet
        return format_float(v if isinstance(v, np.floating) else float(v),
                            e.ctype is not None and e.ctype.base == "float")

    def _e_BinOp(self, e: n.BinOp) -> str:
        return f"({self.expr(e.left)} {e.op} {self.expr(e.right)})"

    def _e_UnaryOp(self, e: n.UnaryOp) -> str:
        return f"({e.op}{self.expr(e.operand)})"

    def _e_Call(self, e: n.Call) -> str:
        return f"{e.func}({', '.join(self.expr(a) for a in e.args)})"

    def _e_Index(self, e: n.Index) -> str:
        return f"{self.expr(e.base)}[{self.expr(e.index)}]"

    def _e_Cast(self, e: n.Cast) -> str:
        return f"(({self.ctype(e.ctype)}){self.expr(e.expr)})"

    def _e_Ternary(self, e: n.Ternary) -> str:
        return f"({self.expr(e.cond)} ? {self.expr(e.then)} : {self.expr(e.orelse)})"

    def _e_Member(self, e: n.Member) -> str:
        return f"{self.expr(e.value)}{'->' if e.arrow else '.'}{e.attr}"

    # -- statements ---------------------------------------------------------------------------
    def _s_Decl(self, s: n.Decl) -> list[str]:
        text = self.ctype(s.ctype, s.name) + "".join(f"[{d}]" for d in s.dims)
        if s.align:
            text += f" __attribute__((aligned({s.align})))"
        if s.init is not None:
            text += f" = {self.expr(s.init)}"
        return [self._pad(text + ";")]

    def _s_Assign(self, s: n.Assign) -> list[str]:
        return [self._pad(f"{self.expr(s.target)} = {self.expr(s.value)};")]

    def _s_AugAssign(self, s: n.AugAssign) -> list[str]:
        if s.op not in n.BINARY_OPS:
            raise ValueError(f"unknown C operator {s.op!r} in augmented assignment")
        return [self._pad(f"{self.expr(s.target)} {s.op}= {self.expr(s.value)};")]

    def _s_ExprStmt(self, s: n.ExprStmt) -> list[str]:
        return [self._pad(self.expr(s.expr) + ";")]

    _IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
    _DIRECTIVE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*( ([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*\Z")
    _MODIFIER = re.compile(r"([-+*&|^]|&&|\|\||[A-Za-z_][A-Za-z0-9_]*)\Z")

    def pragma(self, p: n.Pragma) -> str:
        """``#pragma namespace directive clause...``, each part checked."""
        if not self._IDENT.match(p.namespace) or not self._DIRECTIVE.match(p.directive):
            raise ValueError(f"malformed pragma {p.namespace!r} {p.directive!r}: the namespace "
                             "is an identifier and the directive words; put arguments in "
                             "Clause nodes")
        return " ".join(["#pragma", p.namespace, p.directive, *map(self.clause, p.clauses)])

    def clause(self, c: n.Clause) -> str:
        if not isinstance(c, n.Clause) or not self._IDENT.match(c.name):
            raise ValueError(f"malformed pragma clause {c!r}")
        if c.modifier and not self._MODIFIER.match(c.modifier):
            raise ValueError(f"malformed modifier {c.modifier!r} in pragma clause {c.name!r}")
        if not c.args:
            if c.modifier:
                raise ValueError(f"pragma clause {c.name!r} has a modifier but no arguments")
            return c.name
        args = ", ".join(self._clause_arg(c.name, a) for a in c.args)
        return f"{c.name}({c.modifier + ':' if c.modifier else ''}{args})"

    def _clause_arg(self, name: str, a: n.Expr | int | str) -> str:
        if isinstance(a, bool) or not isinstance(a, (int, str, n.Expr)):
            raise ValueError(f"argument {a!r} of pragma clause {name!r} is not a C expression, "
                             "an integer or an identifier")
        if isinstance(a, int):
            return str(a)
        if isinstance(a, str):
            if not self._IDENT.match(a):
                raise ValueError(f"argument {a!r} of pragma clause {name!r} is not an "
                                 "identifier (use a cast node for an expression)")
            return a
        return self.expr(a)

    def _s_Pragma(self, s: n.Pragma) -> list[str]:
        return [self.pragma(s)]

    def _s_Comment(self, s: n.Comment) -> list[str]:
        return [self._pad(f"/* {line} */") for line in comment_lines(s.text)]

    def _s_Block(self, s: n.Block) -> list[str]:
        out = [self._pad("{")]
        self._level += 1
        for stmt in s.body:
            out += self.lines(stmt)
        self._level -= 1
        return out + [self._pad("}")]

    def _body(self, head: str, body: n.Block) -> list[str]:
        return [self._pad(head) + " {"] + self._s_Block(body)[1:]

    def _s_For(self, s: n.For) -> list[str]:
        out = [self.pragma(p) for p in s.pragmas]
        step = self.expr(s.step)
        inc = f"++{s.var}" if step == "1" else f"{s.var} += {step}"
        head = (f"for ({self.ctype(s.ctype, s.var)} = {self.expr(s.start)}; "
                f"{s.var} < {self.expr(s.stop)}; {inc})")
        return out + self._body(head, s.body)

    def _s_While(self, s: n.While) -> list[str]:
        return self._body(f"while ({self.expr(s.cond)})", s.body)

    def _s_If(self, s: n.If) -> list[str]:
        out = self._body(f"if ({self.expr(s.cond)})", s.body)
        if s.orelse is not None and s.orelse.body:
            out[-1] += " else {"
            out += self._s_Block(s.orelse)[1:]
        return out

    def _s_Return(self, s: n.Return) -> list[str]:
        return [self._pad("return;" if s.value is None else f"return {self.expr(s.value)};")]

    def _s_Break(self, s: n.Break) -> list[str]:
        return [self._pad("break;")]

    def _s_Continue(self, s: n.Continue) -> list[str]:
        return [self._pad("continue;")]

    def _s_CudaLaunch(self, s: n.CudaLaunch) -> list[str]:
        raise TypeError("CudaLaunch can only be printed as CUDA (use print_cuda)")

    # -- top level ----------------------------------------------------------------------------
    def _s_Include(self, s: n.Include) -> list[str]:
        return [f"#include <{s.header}>" if s.system else f'#include "{s.header}"']

    def _s_Define(self, s: n.Define) -> list[str]:
        return [f"#define {s.name} {self.expr(s.value)}"]

    def linkage(self, f: n.FunctionDef) -> str:
        return ""

    def _s_FunctionDef(self, f: n.FunctionDef) -> list[str]:
        params = ", ".join(self.ctype(p.ctype, p.name) for p in f.params) or "void"
        prefix = " ".join(x for x in (self.linkage(f), f.qualifier, *f.storage) if x)
        head = f"{prefix + ' ' if prefix else ''}{self.ctype(f.ret)} {f.name}({params})"
        return self._body(head, f.body)

    def _s_Module(self, m: n.Module) -> list[str]:
        out: list[str] = []
        for item in m.body:
            if isinstance(item, n.FunctionDef) and out:
                out.append("")
            out += self.lines(item)
        return out


class CudaPrinter(CPrinter):
    """CUDA C++: ``extern "C"`` linkage, ``__restrict__``, kernel launches."""

    restrict_keyword = "__restrict__"

    def linkage(self, f: n.FunctionDef) -> str:
        return 'extern "C"' if f.extern_c else ""

    def _s_CudaLaunch(self, s: n.CudaLaunch) -> list[str]:
        def dim3(parts: list[n.Expr]) -> str:
            if not 1 <= len(parts) <= 3:
                raise ValueError("a CUDA grid or block has 1 to 3 dimensions")
            return f"dim3({', '.join(self.expr(p) for p in parts)})"

        cfg = [dim3(s.grid), dim3(s.block)]
        if s.shared is not None or s.stream is not None:
            cfg.append(self.expr(s.shared) if s.shared is not None else "0")
        if s.stream is not None:
            cfg.append(self.expr(s.stream))
        args = ", ".join(self.expr(a) for a in s.args)
        return [self._pad(f"{s.kernel}<<<{', '.join(cfg)}>>>({args});")]


def print_c(node: n.Node) -> str:
    """C source for a platform-AST tree."""
    return CPrinter().print(node)


def print_cuda(node: n.Node) -> str:
    """CUDA source for a platform-AST tree."""
    return CudaPrinter().print(node)
