"""The specialisation key of a stencil call, and validation of its arguments.

Runs on every call (the dispatcher's hot path) and again in each bound callable, so bad input is
reported with a clear ``TypeError``/``ValueError`` before any compiled code runs: grids that are
not ``StencilGrid``-like, ``data`` that is not a C-contiguous NumPy array of the grid's shape
(or is a masked array), different shapes, a read-only output, and an output whose memory
overlaps an input. A dtype the C code does not take (complex, float16, bool, uint64, another
byte order) is not among them: the frontend refuses it, so the kernel runs in Python with a
``SpecializationWarning`` naming it, as for any construct outside the DSL. The key holds what the generated code depends on: shapes, dtypes, ghost depths,
neighbour definitions, which DSL methods a grid does not take from ``StencilGrid`` (a subclass
replacing ``interior_points`` runs the kernel in Python), the values of the kernel attributes
the kernel reads (the types only of the float attributes its code takes as parameters, once
they change between calls: :func:`note_attribute_values`), and what the names it calls (``f``,
``math.sqrt``) are bound to when it is called.
"""

from __future__ import annotations

import ast
import struct
import weakref
from collections.abc import Iterable, MutableMapping
from typing import Any, Hashable, NamedTuple

import numpy as np
import numpy.ma  # noqa: F401 - NumPy imports it on first use, which may be another thread's
#                 first call while the process forks: the child's first call then hung on it

from .frontend import _INT_OPERATORS, callee_meaning, dotted_name, resolve_path
from .grid import StencilGrid, dsl_overrides
from .kernel import _found_on, kernel_functions

__all__ = ["stencil_signature", "check_grids", "check_written", "kernel_attribute_names",
           "written_inputs",
           "callee_meanings", "stored_grids", "note_attribute_values", "keep_constant",
           "param_form", "param_kind", "PARAM", "respecialize"]


class _Parsed(NamedTuple):
    """What the key follows in the kernels of a class (see :func:`_kernel_names`)."""

    attrs: tuple[str, ...]                     # the ``self.n`` they read
    funcs: tuple[tuple[Any, tuple], ...]       # (kernel function, dotted names it calls)
    written: tuple[int, ...]                   # positions of the input grids they write
    kernel: Any = None                         # the class's ``kernel`` attribute parsed


#: where a kernel class keeps its :class:`_Parsed` (in its own ``__dict__``, so that it goes
#: with the class: a dict keyed by class kept every class a factory or a re-run notebook cell
#: made, and all their class attributes; a weak key would not do, since a kernel calling
#: ``super()`` holds its class through the functions kept here)
_PARSED = "__asp_stencil_parsed__"


def _describe(i: int, n: int) -> str:
    return "the output grid (last argument)" if i == n - 1 else f"input grid {i + 1}"


def check_grids(args: tuple) -> list[np.ndarray]:
    """Raise ``TypeError``/``ValueError`` for arguments no stencil kernel can run on; return
    the arrays that were checked (plain ``ndarray`` views). Each grid's ``.data`` is read
    exactly once, so compiled code must be given these arrays and no second read of ``.data``
    (a property could return another array then)."""
    n = len(args)
    if n == 0:
        raise TypeError("a stencil kernel takes its grids as arguments (inputs first, output last)")
    arrays: list[np.ndarray] = []
    for i, g in enumerate(args):
        data = getattr(g, "data", None)
        if type(g) is not StencilGrid or type(data) is not np.ndarray:   # the usual grid: fast
            data = _unusual_grid(i, n, g, data)
        elif data.shape != g.shape if type(g.shape) is tuple else \
                data.shape != tuple(g.shape):   # a list, an array set by hand
            _wrong_shape(i, n, data, g)
        if not data.flags.c_contiguous:
            raise ValueError(f"{_describe(i, n)}: .data is not C-contiguous; use "
                             "numpy.ascontiguousarray")
        if i and data.shape != arrays[0].shape:
            raise ValueError(f"grids of different shapes: {arrays[0].shape} and {data.shape} "
                             f"({_describe(i, n)}); a stencil kernel needs equal shapes")
        arrays.append(data)
    out = arrays[-1]
    if not out.flags.writeable:
        raise ValueError("the output grid's .data is read-only")
    for i in range(n - 1):
        if args[i] is args[-1] or np.may_share_memory(out, arrays[i]):
            raise ValueError(f"the output grid aliases input grid {i + 1} (they share memory); "
                             "pass a separate output grid")
    return arrays


def _unusual_grid(i: int, n: int, g: Any, data: Any) -> np.ndarray:
    """:func:`check_grids` of a grid that is not a ``StencilGrid`` over a plain ndarray: the
    checks the usual grid passes by its type, and its ``.data`` as a plain ndarray view."""
    if not hasattr(g, "ghost_depth"):
        scalar = isinstance(g, (int, float, np.number)) and not isinstance(g, bool)
        raise TypeError(f"{_describe(i, n)} must be a StencilGrid (with a NumPy .data), got "
                        f"{type(g).__name__}" + (
                            "; a kernel's arguments are its grids: give a number as an "
                            "attribute of the kernel (k.rate = 0.5) and read self.rate in "
                            "it" if scalar else ""))
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{_describe(i, n)}: .data must be a NumPy array, got "
                        f"{type(data).__name__}")
    if isinstance(data, np.ma.MaskedArray):
        raise TypeError(f"{_describe(i, n)} holds a numpy.ma.MaskedArray: compiled code "
                        "would read and write the values under its mask and leave the "
                        "mask as it was; pass its .filled(value) or np.asarray(.data)")
    if type(data) is not np.ndarray:  # a subclass's methods run no further Python code
        data = np.ndarray.view(data, np.ndarray)
    if tuple(data.shape) != tuple(g.shape):
        _wrong_shape(i, n, data, g)
    return data


def _wrong_shape(i: int, n: int, data: np.ndarray, g: Any) -> None:
    raise ValueError(f"{_describe(i, n)}: .data has shape {data.shape} but the grid's "
                     f"shape is {tuple(g.shape)}")


def check_written(data: list[np.ndarray], written: Iterable[int]) -> None:
    """``ValueError`` when an input grid the kernel writes (positions ``written``) is
    read-only or shares memory with another grid (the output's own checks are
    :func:`check_grids`'): compiled code reads the old values while it writes the new."""
    for i in written:
        if not data[i].flags.writeable:
            raise ValueError(f"grid {i + 1} is written by the kernel but its .data is "
                             "read-only")
        for j, other in enumerate(data):
            if j != i and np.may_share_memory(data[i], other):
                raise ValueError(f"grid {i + 1}, which the kernel writes, shares memory "
                                 f"with grid {j + 1}; pass separate grids")


def written_inputs(instance: Any) -> tuple[int, ...]:
    """Positions of the input grids (all but the last) the kernel writes."""
    return _kernel_names(instance).written


def kernel_attribute_names(instance: Any) -> tuple[str, ...]:
    """Names ``n`` of the ``self.n`` the kernel reads (parsed once per kernel class)."""
    return _kernel_names(instance).attrs


def _function_names(bound: Any
                    ) -> tuple[tuple[str, ...], Any, tuple[tuple[str, ...], ...], set[int]]:
    """``(attribute names, function, dotted names, written input positions)`` of one bound
    kernel function (see :func:`_kernel_names`)."""
    from asp_core.pyast import attribute_name, kernel_source

    src = kernel_source(bound)
    fn = src.function
    self_name = fn.args.args[0].arg if fn.args.args else None
    names = tuple(sorted({attribute_name(bound, n.attr) for n in ast.walk(fn)
                          if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                          and n.value.id == self_name}))
    paths = {dotted_name(n.func) for n in ast.walk(fn) if isinstance(n, ast.Call)}
    paths |= {dotted_name(n.value) for n in ast.walk(fn) if isinstance(n, ast.Attribute)}
    func = getattr(bound, "__func__", bound)
    code = func.__code__
    local = set(code.co_varnames) | set(code.co_cellvars)
    grids = [a.arg for a in fn.args.args[1:]]
    written = {grids.index(g) for g in stored_grids(fn) if g in grids[:-1]}
    return (names, func, tuple(sorted(p for p in paths if p is not None and p[0] not in local)),
            written)


def stored_grids(node: ast.AST) -> set[str]:
    """The names ``g`` of the ``g[...] = `` and ``g[...] op= `` statements under ``node``."""
    return {t.value.id for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AugAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)}


def _kernel_names(instance: Any) -> _Parsed:
    """What the kernels of ``instance``'s class read and write, parsed once per class: the
    ``self.n`` they read, the names they call or read module constants through (``f``,
    ``math.sqrt``, ``math`` of ``math.pi``), which the frontend resolves when it specialises
    and the key must therefore follow, and the input grids they write (checked in every mode,
    ``ASP_MODE=python`` included). Every ``kernel`` along the MRO counts: a subclass's kernel
    may call ``super().kernel(...)``, whose dispatcher's key is computed from the same
    instance."""
    cls = type(instance)
    entry = cls.__dict__.get(_PARSED)
    # the kernel replaced on the class after a first call (``K.kernel = KernelMethod(g)``):
    # parsed again, else what ``g`` reads was in no key and objects shared the old code
    current = _found_on(cls, "kernel")
    if entry is None or entry.kernel is not current:
        names: set[str] = set()
        written: set[int] = set()
        funcs = []
        try:
            bounds = kernel_functions(instance)
        except Exception:  # noqa: BLE001 - the frontend will report it
            bounds = []
        for bound in bounds:
            try:
                attrs, func, paths, writes = _function_names(bound)
            except Exception:  # noqa: BLE001 - no source: the frontend will report it
                continue
            names |= set(attrs)
            written |= writes
            if paths:
                funcs.append((func, paths))
        entry = _Parsed(tuple(sorted(names)), tuple(funcs), tuple(sorted(written)), current)
        try:
            setattr(cls, _PARSED, entry)
        except (AttributeError, TypeError):  # a metaclass refusing attributes: parse each call
            pass
    return entry


def callee_meanings(instance: Any) -> tuple:
    """What each dotted name of the kernel means now (see :func:`frontend.callee_meaning`):
    rebinding a global or closure variable the kernel calls (``f = math.cos`` after
    ``f = math.sin``, a ``max`` of the user's defined later) changes the key, so the kernel is
    specialised again instead of running the code generated for the old object."""
    funcs = _kernel_names(instance).funcs
    if not funcs:
        return ()
    if len(funcs) == 1:
        func, paths = funcs[0]
        return tuple((p, callee_meaning(resolve_path(func, p))) for p in paths)
    return tuple(tuple((p, callee_meaning(resolve_path(func, p))) for p in paths)
                 for func, paths in funcs)


#: the attribute types keyed by their value and type name
_PLAIN = (bool, int, str, type(None))


def _hashable(v: Any) -> Hashable:
    """``v`` as part of the key: numbers by their exact bits (``0.0 == -0.0`` would reuse the
    code of the other sign; a nan never equals itself and would specialise on every call),
    NumPy scalars with their dtype (a generic-unit ``timedelta64`` cannot be hashed: the call
    raised where Python runs the kernel)."""
    if isinstance(v, float):
        return (type(v).__name__, _float_text(v))
    if isinstance(v, np.generic) and v.dtype.kind != "O":
        return (type(v).__name__, v.dtype.str, v.tobytes())
    if isinstance(v, _PLAIN):
        t = type(v)
        if t in _PLAIN or not isinstance(v, int):
            return (t.__name__, v)
        # an int subclass (an IntEnum member) by its class and its operators, not its name:
        # one redefined under the same name (a re-run notebook cell) or given an operator
        # after the first call ran the code compiled for the old one
        return ((t, tuple(getattr(t, op, None) for op in _INT_OPERATORS)), v)
    return (type(v).__name__, id(v))


def _float_text(v: float) -> str:
    """A float's exact text: its hex, and a NaN's bits (``hex()`` gives ``'nan'`` for both
    signs, and the code of one was reused for the other: the other sign bit out)."""
    if v != v:
        return "nan:" + struct.pack(">d", v).hex()
    return v.hex()


def _float_of(text: str) -> float:
    """The float :func:`_float_text` wrote."""
    if text.startswith("nan:"):
        return float(struct.unpack(">d", bytes.fromhex(text[4:]))[0])
    return float.fromhex(text)


def key_attributes(key: Any) -> dict[str, Hashable]:
    """The kernel attributes a :func:`stencil_signature` key holds, by name (their
    :func:`_hashable` forms)."""
    if isinstance(key, tuple) and len(key) == 4 and key[0] == "stencil":
        return dict(key[2])
    return {}


def attribute_value(form: Hashable, live: Any) -> Any:
    """The kernel attribute whose key form is ``form``, ``live`` being its value now: the
    frontend compiles the value the key was made of. Read again, it could be the one another
    thread set meanwhile, and the code for ``alpha = 0.4`` stayed bound to the key of 0.1 for
    good. Numbers come back from their exact form; where the form holds none (an object, by
    identity: no kernel compiles it) and ``live`` is another value, None, which the frontend
    refuses as it would have refused that object."""
    if _hashable(live) == form:
        return live
    if not isinstance(form, tuple):
        return None
    if len(form) == 3:   # a NumPy scalar: (type name, dtype, bytes)
        return np.frombuffer(form[2], dtype=np.dtype(form[1]))[0]
    name, held = form
    if isinstance(held, str) and name in ("float", "float64"):   # a float's hex
        number = _float_of(held)
        return number if name == "float" else np.float64(number)
    # an int or bool, or an int subclass's value (an IntEnum member); an object's form holds
    # its id, a plain int under another type's name
    plain = name in ("bool", "int") and type(held) in (bool, int)
    return held if plain or (isinstance(held, int) and type(held) not in (bool, int)) else None


#: the key form of a float attribute read at each call (a :class:`~asp_stencil.dast.Param`):
#: ``(PARAM, kind)``, kind ``""`` for a Python float, else the NumPy scalar's dtype string
PARAM = "<param>"
#: where a kernel object keeps the names of its float attributes read at each call (those
#: that took a second value: its code then takes them as parameters, one code for all values)
_PARAMS = "_asp_params"
#: where it keeps, per grids (the key's grid part), the names that stay constants of the code
#: for them (the code could not take them as parameters), or True for all (a distributed
#: kernel: its ranks agree on the values)
_CONSTANTS = "_asp_constants"
#: distinct values of one constant attribute of a kernel object after which it is told that
#: each value compiles the kernel anew (a few values tried by hand are no pattern)
RECOMPILING_VALUES = 5
#: the same across the objects of a kernel class (a new object per step given the step's
#: value; a few objects made each with its own constant are no such pattern)
CLASS_RECOMPILING_VALUES = 10
#: where a kernel object keeps, per attribute, the forms it was specialised for (at most
#: :data:`RECOMPILING_VALUES` each)
_VALUES = "_asp_attribute_values"
#: kernel classes already told (once each: a loop making a kernel object per step says it once)
_TOLD: weakref.WeakSet[type] = weakref.WeakSet()


def param_form(value: Any) -> tuple[str, str] | None:
    """The key form of ``value`` as a parameter: for a Python float or a NumPy float64 or
    float32 scalar (the arithmetic of its type is what the code fixes), else None."""
    t = type(value)
    if t is float:
        return (PARAM, "")
    if t is np.float64 or t is np.float32:
        return (PARAM, value.dtype.str)
    return None


def param_kind(form: Hashable) -> str | None:
    """The :class:`~asp_stencil.dast.Param` kind a key form stands for, else None."""
    if type(form) is tuple and len(form) == 2 and form[0] == PARAM:
        return form[1]
    return None


def _forms(instance: Any, names: tuple[str, ...], grids: tuple) -> tuple:
    """The key's ``(name, form)`` of each attribute (:func:`_hashable`, or
    :func:`param_form` for the object's parameters, but those kept constants on ``grids``)."""
    state = getattr(instance, "__dict__", None)
    params = state.get(_PARAMS) if state is not None else None
    if params:
        pinned = state.get(_CONSTANTS)   # type: ignore[union-attr]
        if pinned is True:
            params = None
        elif pinned and grids in pinned:
            params = params - pinned[grids]
    if not params:
        return tuple([(n, _hashable(getattr(instance, n, None))) for n in names])
    out = []
    for n in names:
        v = getattr(instance, n, None)
        out.append((n, (n in params and param_form(v)) or _hashable(v)))
    return tuple(out)


def keep_constant(instance: Any, names: Iterable[str] | None = None, grids: Hashable = None
                  ) -> None:
    """Make the attributes ``names`` of ``instance`` constants of its code again on ``grids``
    (a key's grid part), for good: its code for them could not take them as parameters (a
    call on int8 grids, whose float store is refused, pinned them on float64 grids too,
    which then compiled at every value). ``names=None``: all, on all grids (its ranks
    compare them: :mod:`asp_stencil.distributed`)."""
    state = getattr(instance, "__dict__", None)
    if state is None:
        return
    if names is None:
        state[_CONSTANTS] = True
        state.pop(_PARAMS, None)
        return
    pinned = state.get(_CONSTANTS) or {}
    if pinned is not True:
        state[_CONSTANTS] = {**pinned, grids: pinned.get(grids, frozenset()) | frozenset(names)}


def _first_time(cls: type) -> bool:
    """Whether ``cls``'s kernels have not been named yet (then they are, from now on); False
    for a class its metaclass makes unhashable (its call raised ``TypeError`` at the fifth
    value)."""
    try:
        if cls in _TOLD:
            return False
        _TOLD.add(cls)
    except TypeError:
        return False
    return True


def respecialize(ctx: Any, error: BaseException) -> bool:
    """The specializer's ``respecialize``: a key holding parameters whose code could not be
    made (Python's raising float arithmetic of a parameter, a lowering that needs a value)
    makes them constants of the kernel object's code on those grids again, for good: its
    next key holds their values, as before they changed."""
    names = [n for n, f in key_attributes(ctx.key).items() if param_kind(f) is not None]
    if not names or ctx.instance is None:
        return False
    keep_constant(ctx.instance, names, ctx.key[1])
    return True


def note_attribute_values(instance: Any, key: Any) -> None:
    """Follow the values of ``instance``'s kernel attributes its kernel is specialised for
    (called by the frontend for each key it parses, and by the backend that binds it). A
    float attribute that takes a second value becomes a parameter of the code (the next keys
    hold its type only): a time ``self.t`` set before every call compiled and tuned the
    kernel at every call, 0.18 s a call on a 256x256 grid whose kernel runs in microseconds
    (14 times slower than the kernel in Python). Another attribute (an int, a float the code
    cannot take as a parameter) that has taken :data:`RECOMPILING_VALUES` values is named in
    a :class:`~asp_core.errors.PerformanceWarning`. Parameters are made per kernel object:
    objects made each with its own constant keep it a constant (the blocked ``iterate`` and
    the CUDA and NumPy platforms take none). Values are also counted across the objects of
    the class: a new object per step given the step's value (``Heat(alpha).kernel(u, out)``)
    compiled at every step, 0.24-0.35 s a call on 256x256, without a word; it is named once
    :data:`CLASS_RECOMPILING_VALUES` values compiled."""
    state = getattr(instance, "__dict__", None)
    forms = key_attributes(key)
    if state is None or not forms:
        return
    everywhere = state.get(_CONSTANTS) is True
    told = _follow(state, forms, everywhere, RECOMPILING_VALUES)
    where = ""
    shared = _class_state(type(instance))
    if shared is not None:   # counted only: each object may keep a constant of its own
        across = _follow(shared, forms, True, CLASS_RECOMPILING_VALUES)
        if across is not None and told is None:
            told, where = across, " across its objects"
    if told is not None and _first_time(type(instance)):
        name, known = told
        shown = ", ".join(repr(attribute_value(f, None)) for f in known[:3])
        from asp_core.errors import PerformanceWarning, warn

        warn(f"asp: {type(instance).__name__}.kernel has been compiled for {len(known)} values "
             f"of self.{name}{where} ({shown}, ...): this attribute is a constant of the generated "
             "code, so each new value compiles (and tunes) the kernel again, which costs more "
             "than running it. Keep it fixed across calls; give a value that changes between "
             "calls in an input grid (filled with it) or, for a float, see the asp-stencil "
             "guide for what keeps it from being a parameter", PerformanceWarning)


def _follow(state: MutableMapping[str, Any], forms: dict[str, Hashable], everywhere: bool,
            limit: int) -> tuple[str, list] | None:
    """:func:`note_attribute_values` on one record (an object's ``__dict__``, its class's
    :func:`_class_state`): makes parameters of the floats that took another value (unless
    ``everywhere`` keeps them constants), and returns ``(name, values)`` of an attribute
    whose values just reached ``limit``, else None."""
    # replaced, never changed in place: a copy made by copying the ``__dict__`` counts its own
    values = dict(state.get(_VALUES, {}))
    told = None
    for name, form in forms.items():
        known = values.get(name, [])
        # numbers only: an object (a str, a config) is not compiled, its form is its identity
        if param_kind(form) is not None or form in known or attribute_value(form, None) is None:
            continue
        # a float after any other value: a time started at the int 0 (``k.t = 0``, then
        # ``k.t += dt``) stayed a constant, compiled at every step, when both had to be floats
        # (and after five other values, whatever came then)
        if known and not everywhere and param_form(attribute_value(form, None)) and \
                name not in state.get(_PARAMS, ()):
            state[_PARAMS] = state.get(_PARAMS, frozenset()) | {name}
            # the values compiled before it are no pattern of recompiles any more: the warning
            # at five named "0.5, 0.7, 0, ..." where 0.5 was not compiled again (counted from
            # this value on, which this call compiles as a constant)
            values[name] = [form]
            continue
        if len(known) >= limit:
            continue
        values[name] = known = [*known, form]
        if len(known) == limit:
            told = (name, known)
    state[_VALUES] = values
    return told


#: where a kernel class keeps what :func:`note_attribute_values` follows for all its objects
_SHARED = "__asp_stencil_values__"


def _class_state(cls: type) -> dict[str, Any] | None:
    """The record of ``cls``'s own (in its ``__dict__``, so it goes with the class), or None
    for a class refusing attributes."""
    shared = cls.__dict__.get(_SHARED)
    if shared is None:
        try:
            setattr(cls, _SHARED, {})
        except (AttributeError, TypeError):
            return None
        shared = cls.__dict__.get(_SHARED)
    return shared


def check_arity(args: tuple, instance: Any) -> None:
    """``TypeError`` when ``instance``'s kernel takes another number of grids than ``args``
    holds, said before what :func:`check_grids` found in them: ``kernel(u, out, out)`` of a
    two-grid kernel was told its output aliases input grid 2."""
    import inspect

    funcs = kernel_functions(instance) if instance is not None else []
    if not funcs:
        return
    try:
        params = list(inspect.signature(funcs[0]).parameters.values())
    except (TypeError, ValueError):   # no signature to compare with: check_grids' error stands
        return
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if all(p.kind in plain for p in params) and len(params) != len(args):
        raise TypeError(f"{funcs[0].__name__}() takes {len(params)} grid arguments "
                        f"({', '.join(p.name for p in params)}), got {len(args)}")


#: where a grid keeps its neighbour definition's key form, with the rows it was made from
_NEIGHBOURS = "_asp_neighbours_key"


def _neighbours(g: Any) -> tuple:
    """``g.neighbor_definition`` as a tuple of tuples of offsets, kept on the grid beside a
    copy of the rows it was made from: it changes in place (a row appended to), so each call
    compares the rows (one C comparison) instead of converting them again, when every offset
    is a tuple (immutable: a list offset changed in place would not be seen)."""
    rows = g.neighbor_definition
    own = getattr(g, "__dict__", None)
    kept = own.get(_NEIGHBOURS) if own is not None else None
    if kept is not None:
        try:
            same = kept[0] == rows
        except ValueError:   # an array offset put in place: compared element-wise
            same = False
        if same:
            return kept[1]
    form = tuple([tuple(map(tuple, offs)) for offs in rows])
    if own is not None and all(type(o) is tuple for offs in rows for o in offs):
        own[_NEIGHBOURS] = ([list(offs) for offs in rows], form)
    return form


def stencil_signature(args: tuple, kwargs: dict, instance: Any) -> Hashable:
    """The specialisation key (validates the arguments first)."""
    if kwargs:
        raise TypeError(f"stencil kernels take grids as positional arguments, got keywords "
                        f"{sorted(kwargs)}")
    parsed = _kernel_names(instance) if instance is not None else None
    try:
        data = check_grids(args)
        if parsed is not None and parsed.written:
            check_written(data, (i for i in parsed.written if i < len(data) - 1))
    except ValueError:
        check_arity(args, instance)
        raise
    grids = tuple([
        (d.shape, d.dtype.str, int(g.ghost_depth), _neighbours(g),
         bool(getattr(g, "periodic", False)), dsl_overrides(g))
        for g, d in zip(args, data)])
    attrs: tuple = ()
    callees: tuple = ()
    if parsed is not None:
        attrs = _forms(instance, parsed.attrs, grids)
        callees = callee_meanings(instance) if parsed.funcs else ()
    return ("stencil", grids, attrs, callees)
