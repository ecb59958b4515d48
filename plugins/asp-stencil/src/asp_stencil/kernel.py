"""`StencilKernel`: subclass it and define ``kernel(self, *inputs, output)``.

Accessing ``.kernel`` on an instance gives a specialising ``asp_core.Dispatcher`` bound to that
instance (the paper calls ``ExampleKernel().kernel(in_grid, out_grid)`` directly, so the method
itself must be the specialised entry point). The original function stays available as
``type(k).kernel.func`` and as ``k.pure_python(...)``; it is also the dispatcher's fallback.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from numbers import Integral
from typing import Any, Callable, TypeVar

import asp_core  # noqa: F401 - here, not at a first call: its fork hooks must be registered
#                 before another thread's first call can be importing it when the process forks

from .grid import fill_periodic_ghosts

__all__ = ["StencilKernel", "KernelMethod", "kernel_function", "kernel_functions",
           "kernel_options", "object_memo", "temporal_choice", "OPTIONS", "STATE_PREFIX"]

#: the kernel options asp-stencil reads, besides a phase's name (which picks its component)
OPTIONS = ("disable_passes", "temporal", "max_variants")
#: the most sweeps ``iterate`` runs in one call: its C loops count them in a 64-bit ``long``
MAX_STEPS = 2**63 - 1


def kernel_options(kernel: Any) -> dict[str, Any]:
    """``kernel.asp_options``, checked: a mapping of phase names and :data:`OPTIONS`. A list
    of pairs ended ``iterate`` in an ``AttributeError`` from inside asp-stencil, and a
    misspelt key (``platfrom_selection``) was ignored without a word."""
    from asp_core import PHASES

    options = getattr(kernel, "asp_options", None)
    options = {} if options is None else options   # [] or 0 passed as "no options"
    where = f"{type(kernel).__name__}.asp_options"
    if not isinstance(options, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(options).__name__}: {options!r:.80}")
    unknown = [key for key in options if key not in PHASES and key not in OPTIONS]
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; the "
                         f"known ones are: {', '.join((*PHASES, *OPTIONS))}")
    if "temporal" in options:   # refused at the first call, not only by a later iterate
        temporal_choice(options["temporal"], f"{where}['temporal']")
    count = options.get("max_variants", 1)
    if isinstance(count, bool) or not isinstance(count, Integral) or count < 1:
        # 0 sent the kernel to Python ("produced no variants"), -1 dropped the last variant
        raise ValueError(f"{where}['max_variants'] must be an int of at least 1, got {count!r}")
    return dict(options)


def temporal_choice(value: Any, where: str) -> str:
    """``auto``, ``on`` or ``off`` from the kernel option ``temporal`` or
    ``ASP_STENCIL_TEMPORAL`` (``where``: which, for the error)."""
    opt = str(value).strip().lower()
    if opt in ("off", "0", "false", "no"):
        return "off"
    if opt in ("on", "1", "true", "yes", "always"):
        return "on"
    if opt != "auto":
        raise ValueError(f"{where} must be 'auto', 'on' or 'off', got {opt!r}")
    return "auto"


#: the start of the name of everything Asp keeps in a kernel object's ``__dict__`` (its
#: dispatchers, what its key follows, its blocked and distributed code): a copy or a pickle of
#: the object starts without them (:meth:`StencilKernel.__getstate__`)
STATE_PREFIX = "_asp_"
#: numbers making each :class:`KernelMethod`'s :attr:`~KernelMethod.slot` its own
_SLOTS = itertools.count()

_T = TypeVar("_T")


def object_memo(kernel: Any, name: str, factory: Callable[[], _T]) -> _T:
    """What Asp keeps for the kernel object ``kernel`` under ``name`` (starting with
    :data:`STATE_PREFIX`), made by ``factory`` at the first use: kept in the object's own
    ``__dict__``, so it is the object's alone and goes with it. Kept in a ``WeakKeyDictionary``
    it was shared by objects that compare equal (two kernel classes whose ``__eq__`` compares
    their parameters ran each other's blocked code), and a value holding the object kept it
    alive for good. Kept with its owner: a copy made by copying the ``__dict__`` makes its
    own. An object without a ``__dict__`` gets a new one at each use."""
    state = getattr(kernel, "__dict__", None)
    if not isinstance(state, dict):
        return factory()
    held = state.get(name)
    if held is None or held[0] is not kernel:
        held = state.setdefault(name, (kernel, factory()))
        if held[0] is not kernel:   # a copied ``__dict__``'s
            held = state[name] = (kernel, factory())
    return held[1]


def _filling_ghosts(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (the kernel as Python) preceded by the periodic ghost fill of its grids."""

    def run(*grids: Any) -> Any:
        fill_periodic_ghosts(grids)
        return func(*grids)

    run.__wrapped__ = func  # type: ignore[attr-defined]
    return run


def _bound(func: Any, instance: Any, owner: type | None) -> Any:
    """``func`` as ``instance.kernel`` gives it: bound by its ``__get__``, or itself (a
    decorator's callable object without one is called with the grids alone, as in Python)."""
    get = getattr(type(func), "__get__", None)
    return func if get is None else get(func, instance, owner)


def kernel_function(kernel: Any) -> Callable[..., Any]:
    """The Python function of ``kernel``'s ``kernel`` method bound to ``kernel`` (found along
    its class's MRO; not the dispatcher): what the frontend parses and the pure-Python
    reference runs. ``TypeError`` if the class has no ``kernel``."""
    for klass in type(kernel).__mro__:
        k = klass.__dict__.get("kernel")
        if k is not None:
            return _bound(k.func if isinstance(k, KernelMethod) else k, kernel, type(kernel))
    raise TypeError(f"{type(kernel).__name__} has no kernel method; stencil kernels subclass "
                    "StencilKernel and define kernel(self, *inputs, output)")


def kernel_functions(kernel: Any) -> list[Callable[..., Any]]:
    """The Python function of every ``kernel`` method along the MRO of ``kernel``'s class,
    bound to ``kernel``, the one :func:`kernel_function` gives first: a ``super().kernel(...)``
    call runs a base class's, whose attributes and callees the specialisation key must follow
    too."""
    out = []
    for klass in type(kernel).__mro__:
        k = klass.__dict__.get("kernel")
        if k is not None:
            func = k.func if isinstance(k, KernelMethod) else k
            if callable(func) or hasattr(type(func), "__get__"):
                out.append(_bound(func, kernel, type(kernel)))
    return out


def _found_on(cls: type, name: str) -> Any:
    """What ``cls.name`` resolves to along the MRO (the raw class attribute), or None."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _specialising(cls: type) -> None:
    """Make the ``kernel`` of a new class a :class:`KernelMethod`: its own, or the one a mixin
    that is no ``StencilKernel`` gives (it was called as a plain method, in Python, with no
    warning). The mixin's function is taken as the class statement finds it."""
    for klass in cls.__mro__:
        k = klass.__dict__.get("kernel")
        if k is not None:
            break
    else:
        return
    # a classmethod too (not callable itself): its call is then told it runs in Python
    if (callable(k) or isinstance(k, classmethod)) and not isinstance(k, KernelMethod) and \
            (klass is cls or not issubclass(klass, StencilKernel)):
        desc = KernelMethod(k)
        desc.attr = "kernel"
        desc.owner = cls
        setattr(cls, "kernel", desc)


class KernelMethod:
    """Data descriptor wrapping a subclass's ``kernel`` function.

    The first access on an instance creates its Dispatcher and keeps it in the instance's
    ``__dict__`` under a name of this descriptor's own (:attr:`slot`), so a base class's
    descriptor reached through ``super().kernel`` or ``Base.kernel(instance, ...)`` keeps its
    dispatcher apart and the instance's own ``kernel`` stays its class's. A kept dispatcher
    is used only by the instance it was made for: a copy made by copying the ``__dict__``
    (``new.__dict__.update(self.__dict__)`` in a ``__copy__``) ran the original's dispatcher,
    with the original's attributes, and gave the original's results. A value set on the
    instance (``k.kernel = f``) is what its ``kernel`` gives, as for a plain method.
    """

    def __init__(self, func: Any) -> None:   # a function, a staticmethod or a classmethod
        self.func = func
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", "kernel")
        self.slot = f"{STATE_PREFIX}kernel_{next(_SLOTS)}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self.owner = owner

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        state = instance.__dict__
        attr = getattr(self, "attr", "kernel")
        # the descriptor of a base class, reached through ``super().kernel`` or
        # ``Base.kernel(instance, ...)``, runs the base's kernel, not what the instance set
        if attr in state and _found_on(type(instance), attr) is self:
            return state[attr]
        d = state.get(self.slot)
        if d is not None and d.instance is instance:
            return d
        from asp_core import Dispatcher

        own = _found_on(type(instance), attr) is self
        bound = _bound(self.func, instance, owner)
        cls_name = type(instance).__name__ if own else \
            getattr(getattr(self, "owner", None), "__name__", type(instance).__name__)
        d = Dispatcher("stencil", bound, fallback=_filling_ghosts(bound), instance=instance,
                       options=kernel_options(instance),
                       name=f"{cls_name}.{self.__name__}")
        # the first stored wins: threads making the instance's first call at once each made a
        # dispatcher, and each specialised and tuned its own (the last one stored kept)
        kept = state.setdefault(self.slot, d)
        if kept.instance is not instance:   # a copied __dict__'s: this instance's replaces it
            state[self.slot] = kept = d
        return kept

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[getattr(self, "attr", "kernel")] = value

    def __delete__(self, instance: Any) -> None:
        attr = getattr(self, "attr", "kernel")
        if attr not in instance.__dict__:
            raise AttributeError(f"{type(instance).__name__!r} object has no attribute "
                                 f"{attr!r} set on it (its kernel method is the class's)")
        del instance.__dict__[attr]

    def __call__(self, instance: Any, *grids: Any) -> Any:
        """``Class.kernel(instance, *grids)`` specialises as well."""
        return self.__get__(instance, type(instance))(*grids)


class StencilKernel:
    """Base class of stencil kernels (the Asp paper's API)."""

    #: per-class options for the dispatcher, e.g. ``{"platform_selection": "python"}``
    asp_options: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _specialising(cls)

    def __getstate__(self) -> dict[str, Any]:
        """The attributes without what Asp keeps on the object (names starting with
        :data:`STATE_PREFIX`): its dispatchers are bound to this instance (a copy's ``kernel``
        ran with the original's attributes) and hold locks and compiled code (deepcopy and
        pickle failed); a copy or an unpickled kernel specialises afresh, from the code cache.
        Nor what the key follows of this object's attribute values: six copies of one kernel,
        each given its own ``t``, shared one count of values and were told that ``t`` took
        five."""
        return {name: value for name, value in self.__dict__.items()
                if not name.startswith(STATE_PREFIX)}

    def pure_python(self, *grids: Any) -> Any:
        """Run the kernel as plain Python (the reference semantics)."""
        func = kernel_function(self)
        fill_periodic_ghosts(grids)
        return func(*grids)

    def iterate(self, *grids: Any, steps: int) -> Any:
        """Run ``steps`` sweeps, swapping the output with the last input after each (Jacobi
        ping-pong); returns the grid holding the last result. Bitwise equal to ``steps``
        separate calls with the swaps done by hand, but on OpenMP the sweeps may run temporally
        blocked and on CUDA in one device loop, whichever timing shows is fastest (see
        :mod:`asp_stencil.temporal.iterate`)."""
        if isinstance(steps, bool) or not isinstance(steps, Integral) or \
                not 0 <= steps <= MAX_STEPS:   # 2**64 + 2 ran 1934 sweeps
            raise ValueError(f"steps must be an int from 0 to 2**63 - 1, got {steps!r}")
        steps = int(steps)
        if len(grids) < 2:
            raise TypeError("iterate() needs at least one input grid and the output grid")
        from .temporal.iterate import iterate

        return iterate(self, grids, steps)
