"""Asp is SEJITS for Python: selective, embedded, just-in-time specialisation.

The public API of the core. Importing it is cheap (no compiler runs, no heavy optional
dependency is imported); plugins are loaded on first use.
"""

# exit handlers run last-in first-out: the kill of the tools still running (asp_core.spawn)
# is registered first, so that it runs last, after the compile pool's wait for its running
# compiles (killed first, every compile under way at a normal exit died), which runs after the
# plugins' (one registered by a plugin's thread while the interpreter exits never runs: its
# compiler outlived the process). spawn's fork hooks, registered before any plugin's, run
# after them (see asp_core.spawn)
from asp_core import spawn as _spawn  # noqa: F401
from asp_core import background as _background  # noqa: F401
from asp_core._version import __version__
from asp_core.components import (Backend, DomainOptimizer, Frontend, Platform, PlatformOptimizer,
                                 PlatformProgram, Variant)
from asp_core.context import SpecializationContext
from asp_core.dispatch import Dispatcher, specialize
from asp_core.errors import (AspError, CacheError, CacheWarning, CompileError, CompilerNotFound,
                             CompileTimeout, PerformanceWarning, PluginError, PluginWarning,
                             SpecializationWarning, ToolchainError, Unspecializable)
from asp_core.hookspecs import hookspec
from asp_core.passes import Pass, PassManager, PassReport, PassResult, asp_pass
from asp_core.phases import PHASES
from asp_core.plugins import get_plugin_manager, get_registry, hookimpl

__all__ = [
    "__version__", "hookimpl", "hookspec", "PHASES", "Dispatcher", "specialize",
    "SpecializationContext", "PlatformProgram", "Variant", "Frontend", "DomainOptimizer",
    "Platform", "PlatformOptimizer", "Backend", "Pass", "PassManager", "PassReport", "PassResult",
    "asp_pass", "get_plugin_manager", "get_registry", "AspError", "Unspecializable",
    "SpecializationWarning", "ToolchainError", "CompilerNotFound", "CompileError", "CompileTimeout",
    "CacheError",
    "PluginError", "PluginWarning", "CacheWarning", "PerformanceWarning",
]
