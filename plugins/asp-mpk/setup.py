"""Builds asp-mpk's native plan builder (``asp_mpk._planner``, pybind11) at install time.

The extension is optional: without a C++ compiler the install still succeeds and asp-mpk uses
its numpy plan builder (with one warning at first use).  Everything else is in pyproject.toml.
"""

from pybind11.setup_helpers import Pybind11Extension, build_ext, has_flag
from setuptools import setup


class BuildExt(build_ext):
    """With OpenMP where the compiler has it: the module's parallel passes then run on the
    threads of the runtime the generated kernels use (see ``in_parts`` in _planner.cpp)."""

    def build_extensions(self) -> None:
        if has_flag(self.compiler, "-fopenmp"):
            for ext in self.extensions:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
        super().build_extensions()


setup(
    ext_modules=[Pybind11Extension("asp_mpk._planner", ["src/asp_mpk/_planner.cpp"],
                                   cxx_std=17, extra_compile_args=["-O3"],
                                   optional=True)],
    cmdclass={"build_ext": BuildExt},
)
