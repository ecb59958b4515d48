"""Developer sessions: ``nox -s tests``, one per plugin, ``lowest``, ``gmm_sklearn_lowest``,
``docs``, ``bench``, ``lint``, ``typecheck``.

Each session installs what it needs from this checkout into its own virtual environment.
"""

from __future__ import annotations

import re
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
PLUGINS = {"stencil": "asp-stencil", "gmm": "asp-gmm", "mpk": "asp-mpk",
           "stencil_numpy": "asp-stencil-numpy", "pytest_asp": "pytest-asp",
           "asp_bench": "asp-bench"}


@nox.session
def tests(session: nox.Session) -> None:
    """The whole default test suite (what CI runs)."""
    session.install("-r", "requirements-dev.txt")
    session.run("pytest", *session.posargs)


@nox.session
def core(session: nox.Session) -> None:
    """Core tests only, with no specializer plugin installed."""
    session.install("-e", ".[test,new]", "-e", "./plugins/pytest-asp", "-e", "./plugins/asp-bench")
    session.run("pytest", "tests", *session.posargs)


def _plugin_session(short: str, dist: str) -> None:
    @nox.session(name=short)
    def run(session: nox.Session) -> None:
        session.install("-e", ".[test]", "-e", "./plugins/pytest-asp", "-e",
                        f"./plugins/{dist}[test]")
        if short == "stencil_numpy":
            session.install("-e", "./plugins/asp-stencil[test]")
        session.run("pytest", f"plugins/{dist}", *session.posargs)

    run.__doc__ = f"Tests of plugins/{dist} alone."


for _short, _dist in PLUGINS.items():
    _plugin_session(_short, _dist)


def lowest_supported(pyproject: str, dist: str) -> str:
    """The version after ``>=`` in ``dist``'s requirement in ``pyproject``'s dependencies."""
    text = Path(__file__).parent / pyproject
    found = re.search(rf'"{re.escape(dist)}\s*>=\s*([0-9][^",<;\s]*)', text.read_text())
    if found is None:
        raise ValueError(f"{pyproject} declares no lower bound for {dist}")
    return found.group(1)


@nox.session
def gmm_sklearn_lowest(session: nox.Session) -> None:
    """asp-gmm's tests against the lowest scikit-learn it declares (``tests`` and ``gmm``
    install the newest): both ends of the supported range are tested."""
    floor = lowest_supported("plugins/asp-gmm/pyproject.toml", "scikit-learn")
    session.install("-e", ".[test]", "-e", "./plugins/asp-gmm[test]",
                    f"scikit-learn=={floor}")
    session.run("pytest", "plugins/asp-gmm", *session.posargs)


def declared_floors() -> dict[str, str]:
    """The lowest version of each third-party requirement that every distribution of this
    checkout allows (the highest of their ``>=`` bounds, dependencies and extras alike)."""
    import tomllib

    from packaging.version import Version

    floors: dict[str, str] = {}
    root = Path(__file__).parent
    for pyproject in [root / "pyproject.toml", *sorted(root.glob("plugins/*/pyproject.toml"))]:
        project = tomllib.loads(pyproject.read_text())["project"]
        for spec in [*project.get("dependencies", []),
                     *(d for deps in project.get("optional-dependencies", {}).values()
                       for d in deps)]:
            found = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;<\s]*).*",
                                 spec)
            if found is None or found.group(1).startswith("asp-"):
                continue
            name = re.sub(r"[-_.]+", "-", found.group(1)).lower()
            version = found.group(3)
            if name not in floors or Version(version) > Version(floors[name]):
                floors[name] = version
    return floors


@nox.session
def lowest(session: nox.Session) -> None:
    """The whole suite against the lowest version of every requirement the distributions
    declare (``tests`` installs the newest): the floors in the pyproject files hold."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("".join(f"{name}=={version}\n"
                                   for name, version in sorted(declared_floors().items())))
    session.install("-r", "requirements-dev.txt", "-c", str(constraints))
    # typing is checked against the newest NumPy's stubs (``typecheck``, ``tests``): each
    # NumPy release's stubs type the same code differently (2.0's, 9 errors; 2.1's, none)
    session.run("pytest", "--deselect", "tests/test_typecheck.py::test_mypy_passes",
                *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors, and run its doctests."""
    session.install("-r", "requirements-dev.txt")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-W", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark suite against its anchors (numba, Devito, scikit-learn, SciPy, ...)."""
    session.install("-r", "requirements-dev.txt", "-e", ".[bench]", "devito", "pystencils")
    session.run("asp", "bench", "--path", "benchmarks", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff")
    session.run("ruff", "check", "asp_core", "plugins", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over asp_core and every plugin (configuration: pyproject.toml [tool.mypy]); the
    test suite runs the same check (tests/test_typecheck.py)."""
    session.install("-r", "requirements-dev.txt")
    packages = ["asp_core", "asp_stencil", "asp_gmm", "asp_mpk", "asp_stencil_numpy",
                "pytest_asp", "asp_bench"]
    session.run("mypy", *(arg for pkg in packages for arg in ("-p", pkg)), *session.posargs)
