"""The hook specifications: Asp's public plugin API (implementations are marked with
:data:`asp_core.hookimpl` and may accept any subset of the keyword arguments).

The five phases are not hooks but *components* registered through
:func:`asp_register_specializers`: several plugins compete for one phase, and the user must be
able to pick one by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from asp_bench import BenchmarkRegistry
    from asp_core.context import SpecializationContext
    from asp_core.registry import Registry

hookspec = pluggy.HookspecMarker("asp")

__all__ = ["hookspec"]


@hookspec
def asp_register_specializers(register: Registry) -> None:
    """Register specializers and the components of their five phases.

    :param register: the component registry. Call
        ``register.specializer(name=..., description=..., signature=...)`` to declare a
        specializer (optional: ``tuning_key=``, ``tuning_repeats=``, ``respecialize=``, see
        :class:`asp_core.registry.Specializer`) and
        ``register.component(specializer=..., phase=..., name=..., obj=..., priority=0)`` to add a
        component to one of its phases. ``phase`` is one of :data:`asp_core.PHASES`. A
        component may target a specializer defined by another distribution; that is how a
        third party adds, for example, a new backend for stencils. A plugin adds one
        rewrite to another specializer's passes with
        ``register.add_pass(specializer=..., manager=..., obj=..., after=...)`` (or
        ``before=``), the manager named as ``asp explain`` lists it (``stencil-domain``).

    Not ``firstresult``: every plugin registers. Registering the same
    ``(specializer, phase, name)`` twice raises :class:`asp_core.PluginError`, which marks the
    offending plugin as broken without affecting the others.

    Example::

        @hookimpl
        def asp_register_specializers(register):
            register.component(specializer="stencil", phase="platform_selection",
                               name="numpy", obj=NumpyPlatform(), priority=-10)
    """


@hookspec
def asp_register_benchmarks(register: BenchmarkRegistry) -> None:
    """Register benchmark suites run by ``asp bench``.

    :param register: call ``register.benchmark(name=..., func=..., specializer=...,
        description=...)``; ``func(bench)`` receives an :class:`asp_bench.BenchContext`
        and records comparisons against an anchor with ``bench.compare(...)``.

    Not ``firstresult``. Example::

        @hookimpl
        def asp_register_benchmarks(register):
            register.benchmark(name="stencil", specializer="stencil", func=run_all)
    """


@hookspec
def asp_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``asp`` command line.

    :param cli: the top-level :class:`click.Group`; use ``@cli.command()`` as usual.

    Not ``firstresult``. Example::

        @hookimpl
        def asp_register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hi")
    """


@hookspec
def asp_doctor_checks() -> list[tuple[str, bool, str]]:
    """Contribute checks to ``asp doctor``.

    :return: a list of ``(name, ok, detail)`` triples; ``detail`` says how to fix a failure.

    Not ``firstresult``: results of all plugins are shown. Example::

        @hookimpl
        def asp_doctor_checks():
            return [("pycuda", importlib.util.find_spec("pycuda") is not None,
                     "pip install 'asp-stencil[cuda]'")]
    """


@hookspec
def asp_specialization_done(ctx: SpecializationContext, result: Any) -> None:
    """Observe a finished specialisation (for logging, tracing, or tests).

    :param ctx: the specialisation context, with ``ctx.events`` holding what ``asp explain``
        shows.
    :param result: the callable now bound for the key, or the fallback reason (a string)
        when the kernel runs in pure Python. While the key's variants are still timed on real
        calls it is the core's stand-in that times them (callable like the winner; ask the
        dispatcher's ``tuning(key)`` / ``tuned(key)`` for the state, as plugins do). After
        ``Dispatcher.build_variants`` (every variant built, none bound) it is the dict of
        variant name to callable.

    Not ``firstresult``. Called once per new specialisation key, after the pipeline, and
    once per ``build_variants``.
    """
