"""Named passes and a small pass manager (numba's PassManager, Devito's switchable passes).

Inside a phase, each step is a named pass: it takes an IR and the context and returns a new IR.
The manager runs them in order, skips those disabled by name (``ASP_DISABLE_PASSES`` or the
kernel option ``disable_passes``), records for ``asp explain`` whether each changed the IR and
what the IR looked like afterwards, and names the pass when one fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from asp_core import config
from asp_core.errors import AspError, Unspecializable
from asp_core.ir import dump

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["Pass", "PassManager", "PassError", "asp_pass"]

PassFn = Callable[[Any, "SpecializationContext"], Any]


class PassError(AspError):
    """A pass raised: a bug in a specializer, reported with the pass's name."""


@dataclass(frozen=True)
class Pass:
    name: str
    fn: PassFn
    description: str = ""

    def __call__(self, ir: Any, ctx: SpecializationContext) -> Any:
        return self.fn(ir, ctx)


def asp_pass(name: str, description: str = "") -> Callable[[PassFn], Pass]:
    """Decorator turning ``fn(ir, ctx) -> ir`` into a :class:`Pass` called ``name``."""

    def wrap(fn: PassFn) -> Pass:
        return Pass(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0])

    return wrap


class PassManager:
    """Runs a list of passes; see the module docstring."""

    def __init__(self, name: str, passes: list[Pass] | None = None) -> None:
        self.name = name
        self.passes: list[Pass] = list(passes or [])

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def add(self, p: Pass) -> None:
        if p.name in self.names:
            raise ValueError(f"pass {p.name!r} is already in pass manager {self.name!r}")
        self.passes.append(p)

    def add_after(self, after: str, p: Pass) -> None:
        """Insert ``p`` right after the pass named ``after``."""
        if after not in self.names:
            raise ValueError(f"no pass {after!r} in {self.name!r}; passes: {self.names}")
        self.passes.insert(self.names.index(after) + 1, p)

    def run(self, ir: Any, ctx: SpecializationContext) -> Any:
        disabled = config.disabled_passes(ctx.options)
        for p in self.passes:
            if p.name in disabled:
                ctx.record("pass", manager=self.name, name=p.name, skipped=True, changed=False)
                continue
            try:
                new = p(ir, ctx)
            except (Unspecializable, AspError):
                raise
            except Exception as exc:
                raise PassError(f"pass {p.name!r} of {self.name!r} failed: "
                                f"{type(exc).__name__}: {exc}") from exc
            if new is None:
                raise PassError(f"pass {p.name!r} of {self.name!r} returned None instead of IR")
            changed = new != ir
            ctx.record("pass", manager=self.name, name=p.name, skipped=False, changed=changed,
                       ir=dump(new) if changed else None)
            ir = new
        return ir
