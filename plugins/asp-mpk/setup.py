"""Builds asp-mpk's native plan builder (``asp_mpk._planner``, pybind11) at install time.

The extension is optional: without a C++ compiler the install still succeeds and asp-mpk uses
its numpy plan builder (with one warning at first use).  Everything else is in pyproject.toml.
"""

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

setup(
    ext_modules=[Pybind11Extension("asp_mpk._planner", ["src/asp_mpk/_planner.cpp"],
                                   cxx_std=17, extra_compile_args=["-O3"],
                                   optional=True)],
    cmdclass={"build_ext": build_ext},
)
