"""`StencilKernel`: subclass it and define ``kernel(self, *inputs, output)``.

Accessing ``.kernel`` on an instance gives a specialising ``asp_core.Dispatcher`` bound to that
instance (the paper calls ``ExampleKernel().kernel(in_grid, out_grid)`` directly, so the method
itself must be the specialised entry point). The original function stays available as
``type(k).kernel.func`` and as ``k.pure_python(...)``; it is also the dispatcher's fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import Any, Callable

import asp_core  # noqa: F401 - here, not at a first call: its fork hooks must be registered
#                 before another thread's first call can be importing it when the process forks

from .grid import fill_periodic_ghosts

__all__ = ["StencilKernel", "KernelMethod", "kernel_function", "kernel_functions",
           "kernel_options", "temporal_choice", "OPTIONS"]

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


#: the key in an instance's ``__dict__`` of the dispatchers of its base classes' kernels (a
#: ``super().kernel(...)`` call, ``Base.kernel(instance, ...)``), per descriptor
_BASE_DISPATCHERS = "_asp_base_kernels"


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
    """Non-data descriptor wrapping a subclass's ``kernel`` function.

    The first access on an instance creates its Dispatcher and caches it in the instance's
    ``__dict__`` under the same name, so later accesses are plain attribute lookups. A base
    class's descriptor reached through ``super().kernel`` or ``Base.kernel(instance, ...)``
    keeps its dispatcher apart (under ``_asp_base_kernels``), so the instance's own ``kernel``
    stays its class's.
    """

    def __init__(self, func: Any) -> None:   # a function, a staticmethod or a classmethod
        self.func = func
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", "kernel")

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self.owner = owner

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        from asp_core import Dispatcher

        attr = getattr(self, "attr", "kernel")
        # the descriptor of a base class, reached through ``super().kernel`` or
        # ``Base.kernel(instance, ...)``: its dispatcher runs the base's kernel, so it must not
        # take the instance's ``kernel`` attribute (every later call ran the base's kernel)
        own = _found_on(type(instance), attr) is self
        if not own:
            per = instance.__dict__.setdefault(_BASE_DISPATCHERS, {})
            hit = per.get(self)
            if hit is not None:
                return hit
        bound = _bound(self.func, instance, owner)
        cls_name = type(instance).__name__ if own else \
            getattr(getattr(self, "owner", None), "__name__", type(instance).__name__)
        d = Dispatcher("stencil", bound, fallback=_filling_ghosts(bound), instance=instance,
                       options=kernel_options(instance),
                       name=f"{cls_name}.{self.__name__}")
        # the first stored wins: threads making the instance's first call at once each made a
        # dispatcher, and each specialised and tuned its own (the last one stored kept)
        if own:
            return instance.__dict__.setdefault(attr, d)
        return per.setdefault(self, d)

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
        """The attributes without the specialising dispatchers cached by :class:`KernelMethod`:
        they are bound to this instance (a copy's ``kernel`` ran with the original's
        attributes) and hold locks and compiled code (deepcopy and pickle failed). A copy or
        an unpickled kernel specialises afresh, from the code cache. Nor what the key follows
        of this object's attribute values (:data:`~asp_stencil.signature.OBJECT_STATE`): six
        copies of one kernel, each given its own ``t``, shared one count of values and were
        told that ``t`` took five."""
        from .signature import OBJECT_STATE

        return {name: value for name, value in self.__dict__.items()
                if name != _BASE_DISPATCHERS and name not in OBJECT_STATE
                and not isinstance(getattr(type(self), name, None), KernelMethod)}

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
