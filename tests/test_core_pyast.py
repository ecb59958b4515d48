"""Python-AST helpers for frontends: kernel source, pattern matching with captures, and
locations in the user's file."""

from __future__ import annotations

import ast
import linecache
import sys
import textwrap

import pytest

from asp_core import SpecializationContext, Unspecializable
from asp_core.pyast import (ANY, Capture, attribute_name, kernel_source, location, match,
                            register_source)


def _expr(text: str) -> ast.expr:
    return ast.parse(text, mode="eval").body


def test_match_any_and_plain_values():
    node = _expr("abs(x)")
    assert match(node, ast.Call(func=ast.Name(id="abs"))) == {}
    assert match(node, ast.Call(func=ast.Name(id="max"))) is None
    assert match(node, ANY) == {}
    assert match(node, ast.BinOp()) is None  # wrong node class
    assert match(3, 3) == {} and match(3, 4) is None


def test_match_captures_nested_and_lists():
    node = _expr("a[i + 1] * 2.0")
    pattern = ast.BinOp(left=ast.Subscript(value=Capture("array", ast.Name()),
                                           slice=ast.BinOp(left=Capture("var"), op=ast.Add(),
                                                           right=ast.Constant(value=1))),
                        op=ast.Mult(), right=Capture("scale", ast.Constant()))
    caps = match(node, pattern)
    assert caps is not None
    assert caps["array"].id == "a" and caps["var"].id == "i" and caps["scale"].value == 2.0
    assert match(_expr("a[i - 1] * 2.0"), pattern) is None  # op differs
    call = _expr("f(x, y)")
    assert match(call, ast.Call(args=[ANY, Capture("second")]))["second"].id == "y"
    assert match(call, ast.Call(args=[ANY])) is None  # list length differs
    assert match(call, ast.Call(args=ANY, keywords=[])) == {}


def test_match_ignores_positions_and_context():
    a = ast.parse("x = y").body[0]
    b = ast.parse("\n\n    x = y".strip()).body[0]
    pattern = ast.Assign(targets=[ast.Name(id="x", ctx=ast.Store())], value=ast.Name(id="y"))
    assert match(a, pattern) == {} and match(b, pattern) == {}
    # a pattern that names Load context still matches a Store target
    assert match(a, ast.Assign(targets=[ast.Name(id="x", ctx=ast.Load())])) == {}


def test_capture_failing_inner_pattern_records_nothing():
    caps: dict = {}
    assert match(_expr("g(1)"), Capture("c", ast.Call(func=ast.Name(id="h"))), caps) is None
    assert caps == {}


class Holder:
    def method(self, a, b):
        value = a + b
        return value  # LOCATION-MARK


def test_kernel_source_of_a_method_and_location():
    src = kernel_source(Holder.method)
    assert src.source.startswith("def method(self, a, b):")  # dedented
    assert src.col_offset == 4 and src.filename == __file__
    assert src.function.name == "method"
    ret = src.function.body[-1]
    line, col = location(src, ret)
    lines = open(__file__).read().splitlines()
    assert lines[line - 1].endswith("# LOCATION-MARK")
    assert col == lines[line - 1].index("return") + 1
    assert location(src, ret.value) == (line, lines[line - 1].index("value") + 1)
    assert kernel_source(Holder().method).firstlineno == src.firstlineno  # bound method


def test_context_unsupported_points_at_node():
    ctx = SpecializationContext("x", Holder.method)
    ret = ctx.tree.body[0].body[-1]
    err = ctx.unsupported(ret, "return of a local", reason="demo")
    assert isinstance(err, Unspecializable)
    assert (err.filename, err.construct, err.reason) == (__file__, "return of a local", "demo")
    assert str(err) == f"{__file__}:{err.lineno}:{err.col}: unsupported construct: return of " \
                       f"a local (demo)"
    whole = ctx.unsupported(None, "anything")
    assert whole.lineno == ctx.firstlineno


def test_kernel_without_source_is_unspecializable():
    with pytest.raises(Unspecializable, match=r"not a Python function \(a builtin_function"):
        kernel_source(len)
    ns: dict = {}
    exec("def f(x):\n    return x\n", ns)
    with pytest.raises(Unspecializable, match="kernel without retrievable source"):
        kernel_source(ns["f"])


def _loaded(tmp_path, monkeypatch, text: str, name: str):
    """Module ``name`` imported from ``text`` (a file in ``tmp_path``), and its file."""
    import importlib

    path = tmp_path / f"{name}.py"
    path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    monkeypatch.delitem(sys.modules, name)
    return module, path


_TEXT = "def f(x):\n    return (x\n            * 2)\n"


@pytest.mark.parametrize("edit", ["def f(x):\n    return (x\n", "x = 1\n"],
                         ids=["saved-mid-edit", "shorter"])
def test_a_file_edited_since_its_import_is_named_as_such(tmp_path, monkeypatch, edit):
    """A file saved mid-edit (an unclosed parenthesis, as an editor's autosave leaves it) made
    inspect raise tokenize.TokenError, which crashed the kernel's call; a file now shorter than
    the function's lines said Python keeps no source for it and to put it in a .py file."""
    module, path = _loaded(tmp_path, monkeypatch, _TEXT, "asp_edited_mod")
    path.write_text(edit)
    linecache.checkcache(str(path))
    with pytest.raises(Unspecializable, match="kernel without retrievable source") as info:
        kernel_source(module.f)
    assert "changed since it was loaded" in info.value.reason
    assert ".py file" not in info.value.reason


@pytest.mark.parametrize("compiled_as", ["here", "elsewhere"])
def test_a_module_without_its_source_says_so(tmp_path, monkeypatch, compiled_as):
    """A bytecode-only module (its .pyc in place of the .py, compiled here or, as in a wheel,
    under another path): the advice was to put the kernel in a .py file, which it is."""
    import py_compile

    name = f"asp_sourceless_{compiled_as}"
    path = tmp_path / f"{name}.py"
    path.write_text(_TEXT)
    dfile = str(path) if compiled_as == "here" else f"/build/wheel/{name}.py"
    py_compile.compile(str(path), cfile=str(tmp_path / f"{name}.pyc"), dfile=dfile,
                       doraise=True)
    path.unlink()
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module(name)
    try:
        with pytest.raises(Unspecializable) as info:
            kernel_source(module.f)
    finally:
        del sys.modules[name]
    assert "without its .py source" in info.value.reason


@pytest.mark.parametrize("filename, magic", [("<timed exec>", "%%time"),
                                             ("<magic-timeit>", "%%timeit")])
def test_a_kernel_in_an_ipython_cell_magic_is_told_to_move_to_a_plain_cell(filename, magic):
    """IPython compiles a %%time or %%timeit cell's body with no source kept: the advice was
    to define the kernel in a Jupyter cell, where it was."""
    ns: dict = {}
    exec(compile("def f(x):\n    return x\n", filename, "exec"), ns)
    with pytest.raises(Unspecializable) as info:
        kernel_source(ns["f"])
    assert f"the {magic} cell magic" in info.value.reason
    assert "plain cell" in info.value.reason


def test_lambda_is_unspecializable():
    f = lambda x: x + 1  # noqa: E731
    with pytest.raises(Unspecializable, match="not a def statement|does not parse"):
        kernel_source(f)


def test_register_source_makes_exec_code_specialisable():
    text = textwrap.dedent("""\
        def generated(x):
            return x * 2
        """)
    filename = "<asp-test-generated>"
    register_source(filename, text)
    ns: dict = {}
    exec(compile(text, filename, "exec"), ns)
    src = kernel_source(ns["generated"])
    assert src.filename == filename and src.firstlineno == 1
    assert match(src.function.body[0].value, ast.BinOp(op=ast.Mult())) == {}


class Documented:
    def method(self, a):
        """A docstring whose second line starts at column 0:
it defeats textwrap.dedent."""
        return a * 2  # DOC-MARK


def test_method_with_unindented_docstring_line():
    src = kernel_source(Documented.method)
    assert src.function.name == "method" and src.col_offset == 4
    ret = src.function.body[-1]
    line, col = location(src, ret)
    lines = open(__file__).read().splitlines()
    assert lines[line - 1].endswith("# DOC-MARK") and col == lines[line - 1].index("return") + 1


MANGLING = """
class Plain:
    def f(self):
        return self.__x
class _Underscored:
    def f(self):
        return self.__x
class __:
    def f(self):
        return self.__x
class Outer:
    class Inner:
        def f(self):
            return self.__x
def make():
    class Local:
        def f(self):
            return self.__x
    return Local
def free(self):
    return self.__x
"""


def test_attribute_name_is_the_name_python_compiles():
    """``attribute_name`` mangles a private name as the compiler did for the same function
    (read back from its code object), and leaves dunders and names outside classes alone."""
    ns: dict = {}
    exec(compile(MANGLING, "<mangling>", "exec"), ns)
    funcs = [ns["Plain"].f, ns["_Underscored"].f, ns["__"].f, ns["Outer"].Inner.f,
             ns["make"]().f, ns["free"]]
    for func in funcs:
        compiled = [n for n in func.__code__.co_names if n.endswith("__x")]
        assert [attribute_name(func, "__x")] == compiled, func.__qualname__
    assert attribute_name(ns["Plain"].f, "__x") == "_Plain__x"
    assert attribute_name(ns["Plain"]().f, "__init__") == "__init__"
    assert attribute_name(ns["Plain"].f, "_y") == "_y"


class Folded:
    def nan(self, a):
        return a + 1e999 * 0.0   # folded by the compiler to a NaN constant

    def constants(self, a):
        return a + (1e999 - 1e999, -0.0, 2j)[0]


@pytest.mark.parametrize("name", ["nan", "constants"])
def test_a_folded_nan_constant_is_the_code_python_runs(name):
    """A NaN never equals itself: a kernel holding a folded ``1e999 * 0.0`` was "a kernel
    whose source file changed since it was loaded" and ran in Python."""
    src = kernel_source(getattr(Folded, name))
    assert src.function.name == name


class Greek:
    def method(self, u):
        Δu = u * 0.5; return Δu + abs(u)   # noqa: E702


def test_location_counts_characters_not_utf8_bytes():
    """``ast`` counts a line's columns in UTF-8 bytes: each ``Δ`` before a construct moved
    the warning's column one on."""
    src = kernel_source(Greek.method)
    call = src.function.body[1].value.right
    line, col = location(src, call)
    with open(__file__, encoding="utf-8") as f:
        text = f.read().splitlines()[line - 1]
    assert text[col - 1:].startswith("abs(u)"), (col, text)
