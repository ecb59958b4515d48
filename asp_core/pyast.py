"""Python-AST helpers for frontends: a kernel's source, and :func:`match`, which compares a node
with a template of ``ast`` nodes (:data:`ANY`, :class:`Capture`), so a frontend states *what*
it accepts instead of walking attributes by hand.
"""

from __future__ import annotations

import __future__
import ast
import dis
import inspect
import linecache
import os
import sys
import textwrap
import tokenize
import types
from dataclasses import dataclass
from typing import Any, Callable

from asp_core.errors import Unspecializable

__all__ = ["KernelSource", "kernel_source", "register_source", "ANY", "Capture", "match",
           "location", "attribute_name"]


@dataclass(frozen=True)
class KernelSource:
    """A function's dedented source, its parsed tree and where it lives."""

    source: str
    tree: ast.Module
    filename: str
    firstlineno: int
    col_offset: int

    @property
    def function(self) -> ast.FunctionDef:
        node = self.tree.body[0]
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        return node  # type: ignore[return-value]


def register_source(filename: str, source: str) -> None:
    """Make ``source`` retrievable by :mod:`inspect` under ``filename`` (for ``exec``'d code)."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)


#: IPython's names for the code of a cell magic: it compiles the cell's body with no source kept
_CELL_MAGICS = {"<timed exec>": "%%time", "<timed eval>": "%%time", "<magic-timeit>": "%%timeit"}


def no_source_advice(filename: str, exc: BaseException, module_file: str | None = None) -> str:
    """Why a kernel has no source and what to do (the fallback warning's reason);
    ``module_file``: the ``__file__`` of the kernel's module (a .pyc: no source installed)."""
    if filename in _CELL_MAGICS:
        return (f"{exc}: IPython keeps no source text for code run by the "
                f"{_CELL_MAGICS[filename]} cell magic, so it cannot be specialised; define the "
                "kernel in a plain cell (and time its calls in another)")
    if os.path.isfile(filename):   # Python read it at import: it is not the text it ran now
        return (f"{exc}: the file no longer holds the text Python runs (changed since it was "
                "loaded); reload the module (or restart) to specialise the new text")
    if (module_file or "").endswith(".pyc") or filename.endswith(".pyc"):
        return (f"{exc}: the module was installed without its .py source (bytecode only), so "
                "it cannot be specialised; install it with its source")
    where = {"<stdin>": "standard input (the interactive prompt, or `python - < file`)",
             "<string>": "`python -c`, exec() or an IPython cell magic such as %%prun"}.get(
        filename, "the interactive prompt" if filename.startswith("<python-input") else filename)
    return (f"{exc}: Python keeps no source text for code defined in {where}, so it cannot be "
            "specialised; put the kernel in a .py file and import it, or define it in a "
            "Jupyter/IPython cell (IPython keeps cell sources)")


def kernel_source(func: Callable[..., Any]) -> KernelSource:
    """The source and AST of ``func``; :class:`Unspecializable` if it has none (REPL, C) or
    is a decorator's wrapper (``functools.wraps``): the function inside is not what a call
    runs, so compiling it would skip whatever the wrapper does."""
    func = getattr(func, "__func__", func)
    if hasattr(func, "__wrapped__"):
        inner = inspect.unwrap(func)
        code = getattr(inner, "__code__", None)
        raise Unspecializable("kernel wrapped by a decorator",
                              filename=getattr(code, "co_filename", "<unknown>"),
                              lineno=getattr(code, "co_firstlineno", 0),
                              reason="a call runs the decorator's wrapper, which compiling the "
                                     "function inside would skip; remove the decorator to "
                                     "specialise the kernel")
    if not inspect.isfunction(func):
        raise Unspecializable(f"kernel that is not a Python function (a {type(func).__name__} "
                              "object)", reason="Asp specialises a def statement; a built-in "
                              "or a callable object (a decorator's, say) has none")
    code = func.__code__
    filename = code.co_filename
    try:
        lines, firstlineno = inspect.getsourcelines(func)
    except (OSError, TypeError, SyntaxError, tokenize.TokenError) as exc:
        # SyntaxError, TokenError: the file, edited since the import, does not tokenize now
        module = sys.modules.get(getattr(func, "__module__", None) or "")
        raise Unspecializable("kernel without retrievable source", filename=filename,
                              lineno=code.co_firstlineno,
                              reason=no_source_advice(filename, exc, getattr(
                                  module, "__file__", None))) from None
    raw = "".join(lines)
    source = textwrap.dedent(raw)
    indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    try:
        try:
            tree = ast.parse(source)
        except IndentationError:
            # a string literal reaching column 0 defeats dedent: strip the def's own indent
            prefix = lines[0][:indent] if lines else ""
            source = "".join(line[indent:] if line.startswith(prefix) else line
                             for line in lines)
            tree = ast.parse(source)
    except SyntaxError as exc:
        raise Unspecializable("source that does not parse on its own", filename=filename,
                              lineno=firstlineno, reason=str(exc)) from None
    if not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise Unspecializable("kernel that is not a def statement (lambda?)",
                              filename=filename, lineno=firstlineno)
    if not _compiles_to(tree.body[0], code, func.__qualname__):
        raise Unspecializable("kernel whose source file changed since it was loaded",
                              filename=filename, lineno=firstlineno,
                              reason="the file's text is not the code Python runs; reload the "
                                     "module (or restart) to specialise the new text")
    return KernelSource(source, tree, filename, firstlineno, indent)


def _owner(qualname: str) -> str:
    """The class whose body defines the function ``qualname`` (``"<locals>"`` for none)."""
    return qualname.split(".")[-2] if qualname.count(".") else "<locals>"


def attribute_name(func: Callable[..., Any], name: str) -> str:
    """The attribute ``obj.name`` in ``func``'s source reads when it runs: Python compiles a
    private name ``__x`` in a class body ``C`` as ``_C__x`` (name mangling), so a frontend that
    looked ``self.__x`` up as written found no such attribute."""
    func = getattr(func, "__func__", func)
    owner = _owner(getattr(func, "__qualname__", "")).lstrip("_")
    if not name.startswith("__") or name.endswith("__") or owner in ("", "<locals>"):
        return name
    return f"_{owner}{name}"


def _compiles_to(node: ast.FunctionDef | ast.AsyncFunctionDef, code: types.CodeType,
                 qualname: str) -> bool:
    """Whether ``node`` compiles to the instructions of ``code``: :mod:`inspect` reads the
    source from the file, which may have been edited since the module was imported (a kernel
    then specialised the new text while Python ran the old)."""
    owner = _owner(qualname)
    body: list[ast.stmt] = [node]
    if owner != "<locals>":   # a method: compiled in a class of its name (name mangling)
        body = [ast.ClassDef(name=owner, bases=[], keywords=[], body=body, decorator_list=[])]
    module = ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
    try:
        made = compile(module, code.co_filename, "exec", dont_inherit=True,
                       flags=code.co_flags & __future__.annotations.compiler_flag)
    except (SyntaxError, ValueError):
        return True   # not decidable here; the frontend reports what it cannot handle
    while made.co_name != node.name:
        inner = [c for c in made.co_consts if isinstance(c, types.CodeType)]
        if not inner:
            return True
        made = inner[0]
    return _instructions(made) == _instructions(code)


#: how a name is reached (a local of an enclosing function, a global), and whether a call of
#: ``name.attr(...)`` loads a method (not for ``name`` a module the file imports), depend on
#: where the def was compiled, not on its text
_NAME_OPS = {"LOAD_GLOBAL": "LOAD", "LOAD_DEREF": "LOAD", "LOAD_CLASSDEREF": "LOAD",
             "LOAD_NAME": "LOAD", "STORE_GLOBAL": "STORE", "STORE_DEREF": "STORE",
             "STORE_NAME": "STORE", "LOAD_METHOD": "LOAD_ATTR"}
#: instructions whose presence depends on where the def was compiled, not on its text (an
#: ``EXTENDED_ARG`` comes with jump offsets past 255, and a method load has another cache size
#: than an attribute load: a kernel of nine ``math.sqrt`` calls was "changed since loaded")
_SKIPPED_OPS = {"COPY_FREE_VARS", "MAKE_CELL", "PUSH_NULL", "RESUME", "NOP", "CACHE",
                "EXTENDED_ARG"}


def _instructions(code: types.CodeType) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for ins in dis.get_instructions(code):
        if ins.opname in _SKIPPED_OPS:
            continue
        if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            value: Any = None   # offsets move with the skipped instructions' caches
        elif isinstance(ins.argval, types.CodeType):
            value = _instructions(ins.argval)
        else:
            value = _constant(ins.argval)
        out.append((_NAME_OPS.get(ins.opname, ins.opname), value))
    return out


def _constant(value: Any) -> Any:
    """``value`` comparable with ``==`` as the compiler made it: floats and complexes by their
    repr (a folded ``1e999 * 0.0`` is a NaN, never equal to itself: the kernel was "changed
    since loaded"; ``-0.0`` and ``0.0`` differ), tuples and frozensets element by element."""
    if isinstance(value, (float, complex)):
        return (type(value).__name__, repr(value))
    if isinstance(value, (tuple, frozenset)):
        return (type(value).__name__, tuple(_constant(v) for v in value))
    return value


def location(src: KernelSource, node: ast.AST) -> tuple[int, int]:
    """``(line, column)`` of ``node`` in the original file (1-based line, 1-based column, in
    characters: :mod:`ast` counts UTF-8 bytes, and each ``Δ`` before a node moved it on)."""
    lineno, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
    lines = src.source.split("\n")
    if 0 < lineno <= len(lines):
        col = len(lines[lineno - 1].encode("utf-8")[:col].decode("utf-8", errors="replace"))
    return src.firstlineno + lineno - 1, col + src.col_offset + 1


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


@dataclass(frozen=True)
class Capture:
    """Matches like ``pattern`` (default: anything) and records the node under ``name``."""

    name: str
    pattern: Any = ANY


def match(node: Any, pattern: Any, captures: dict[str, Any] | None = None
          ) -> dict[str, Any] | None:
    """The captures if ``node`` matches ``pattern``, else None. Fields a pattern node leaves
    unset, and positions, are not compared: ``ast.Call(func=ast.Name(id="abs"))`` matches any
    call of ``abs``."""
    captures = {} if captures is None else captures
    if pattern is ANY:
        return captures
    if isinstance(pattern, Capture):
        if match(node, pattern.pattern, captures) is None:
            return None
        captures[pattern.name] = node
        return captures
    if isinstance(pattern, ast.AST):
        if not isinstance(node, type(pattern)):
            return None
        for field in pattern._fields:
            if not hasattr(pattern, field):
                continue
            want = getattr(pattern, field)
            if want is None and field in ("ctx", "type_comment", "kind"):
                continue
            if isinstance(want, ast.expr_context):
                continue
            if match(getattr(node, field, None), want, captures) is None:
                return None
        return captures
    if isinstance(pattern, list):
        if not isinstance(node, list) or len(node) != len(pattern):
            return None
        for item, want in zip(node, pattern):
            if match(item, want, captures) is None:
                return None
        return captures
    return captures if node == pattern else None
