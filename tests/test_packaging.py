"""Packaging as a user meets it: every distribution builds with the build requirements it
declares, with and without build isolation, and its wheels, installed (not editable) in a fresh
virtual environment, give a working ``asp list``, a kernel of each specializer and ``asp new``.

The sources are copied first so that building leaves nothing (``build/``, ``*.egg-info``) in the
checkout. The build tests need the index (or a cache) for isolated builds; the install test needs
the index for the dependencies (NumPy, SciPy, scikit-learn, ...): both are marked slow.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from pytest_asp import requires_compiler

REPO = Path(__file__).resolve().parent.parent
DISTS = {"asp-core": REPO, **{p.name: p for p in sorted((REPO / "plugins").iterdir())
                              if (p / "pyproject.toml").exists()}}
TIMEOUT = 900


def _run(cmd: list[str], cwd: Path | None = None, env: dict | None = None
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _copy_sources(dest: Path) -> dict[str, Path]:
    ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                    ".nox", "docs", "bench-results", "*.so")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return {name: dest / path.relative_to(REPO) for name, path in DISTS.items()}


def _build(sources: dict[str, Path], out: Path, isolation: bool) -> dict[str, Path]:
    flags = [] if isolation else ["--no-build-isolation"]
    for src in sources.values():
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *flags, "-w", out, src])
    wheels = {}
    for name in sources:
        found = sorted(out.glob(f"{name.replace('-', '_')}-*.whl"))
        assert found, f"no wheel for {name} in {sorted(p.name for p in out.iterdir())}"
        wheels[name] = found[-1]
    return wheels


def _declared_setuptools(pyproject: Path) -> str:
    requires = tomllib.loads(pyproject.read_text())["build-system"]["requires"]
    return next(r for r in requires if r.startswith("setuptools"))


def test_every_distribution_declares_what_its_metadata_needs():
    """The SPDX ``license`` string and ``license-files`` need setuptools >= 77; one version
    source per distribution; plugins depend on a bounded asp-core range."""
    for name, path in DISTS.items():
        meta = tomllib.loads((path / "pyproject.toml").read_text())
        project = meta["project"]
        assert _declared_setuptools(path / "pyproject.toml") == "setuptools>=77", name
        assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
        assert (path / "LICENSE").read_text().startswith("BSD 3-Clause License"), name
        assert "version" not in project and project["dynamic"] == ["version"], name
        assert "attr" in meta["tool"]["setuptools"]["dynamic"]["version"], name
        assert project["classifiers"] and project["urls"] and project["readme"], name
        for dep in project["dependencies"]:
            if dep.startswith(("asp-core", "asp-stencil")):
                assert ">=" in dep and "<" in dep, f"{name}: unbounded {dep!r}"


#: imports a distribution makes without declaring them: GPU libraries asp-stencil looks for at
#: run time (any one will do), and the module asp-stencil ships for the paper's spelling
_UNDECLARED = {"asp-stencil": {"cuda", "cupy", "stencil_kernel"}}


def _declared(project: dict) -> set[str]:
    """The distribution names a ``[project]`` table depends on, extras included."""
    specs = [*project.get("dependencies", []),
             *(d for deps in project.get("optional-dependencies", {}).values() for d in deps)]
    return {_normal(re.split(r"[<>=!~;\[ ]", spec)[0]) for spec in specs}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_distribution_declares_what_it_imports():
    """Each third-party module a distribution's code imports (at the top or inside a
    function) is a dependency or an extra of its own: asp-core read its config file with
    ``tomli`` on Python 3.10 without declaring it (every kernel call failed there in an
    install without pytest, which brought tomli along), asp-mpk imported filelock."""
    from importlib.metadata import packages_distributions

    provides = packages_distributions()
    for name, path in DISTS.items():
        declared = _declared(tomllib.loads((path / "pyproject.toml").read_text())["project"])
        package = path / "asp_core" if name == "asp-core" else path / "src"
        missing = []
        for source in sorted(package.rglob("*.py")):
            if "cookiecutter" in source.parts:   # the template's own project declares those
                continue
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.partition(".")[0]
                    if top in sys.stdlib_module_names or top == "__future__" or \
                            top.startswith("asp_") or top == "pytest_asp" or \
                            top in _UNDECLARED.get(name, ()):
                        continue
                    dists = {_normal(d) for d in provides.get(top, [top])}
                    if not dists & declared:
                        missing.append(f"{top} ({source.relative_to(REPO)}:{node.lineno})")
        assert not missing, f"{name} imports what it does not declare: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("isolation", [False, True], ids=["no-isolation", "isolated"])
def test_wheels_build_and_ship_their_files(tmp_path, isolation):
    sources = _copy_sources(tmp_path / "src")
    wheels = _build(sources, tmp_path / "wheels", isolation)
    expect = {
        "asp-core": ["asp_core/py.typed", "asp_core/cookiecutter/cookiecutter.json",
                     "asp_core/cookiecutter/hooks/pre_gen_project.py"],
        "asp-stencil": ["asp_stencil/py.typed", "asp_stencil/temporal/templates/temporal.c.mako",
                        "stencil_kernel.py"],
        "asp-gmm": ["asp_gmm/py.typed", "asp_gmm/templates/em_openmp.c.mako"],
        "asp-mpk": ["asp_mpk/py.typed", "asp_mpk/templates/mpk_dia.c.mako"],
        "asp-stencil-numpy": ["asp_stencil_numpy/py.typed"],
    }
    for name, wheel in wheels.items():
        files = zipfile.ZipFile(wheel).namelist()
        for want in expect.get(name, []):
            assert want in files, f"{wheel.name} lacks {want}"
        # every template in the source tree is in the wheel
        src = sources[name] / ("src" if name != "asp-core" else "asp_core")
        for mako in src.rglob("*.mako"):
            if name == "asp-core":
                rel = "asp_core/" + mako.relative_to(src).as_posix()
            else:
                rel = mako.relative_to(src).as_posix()
            assert rel in files, f"{wheel.name} lacks the template {rel}"
        assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files), wheel.name
        metadata = zipfile.ZipFile(wheel).read(
            next(f for f in files if f.endswith(".dist-info/METADATA"))).decode()
        assert "License-Expression: BSD-3-Clause" in metadata
        assert "Classifier: " in metadata and "Project-URL: " in metadata


USER_SCRIPT = textwrap.dedent("""
    import warnings
    warnings.simplefilter("error")  # a fallback to pure Python would be a SpecializationWarning
    import numpy as np

    from stencil_kernel import StencilGrid, StencilKernel

    class Laplacian(StencilKernel):
        def kernel(self, in_grid, out_grid):
            for x in out_grid.interior_points():
                for y in in_grid.neighbors(x, 1):
                    out_grid[x] = out_grid[x] + in_grid[y]

    src, dst = StencilGrid([40, 40]), StencilGrid([40, 40])
    src.data[:] = np.random.default_rng(0).random((40, 40))
    Laplacian().kernel(src, dst)
    want = sum(np.roll(src.data, s, a) for a in (0, 1) for s in (1, -1))
    assert np.allclose(dst.data[1:-1, 1:-1], want[1:-1, 1:-1]), "stencil"

    from asp_gmm import GaussianMixture
    X = np.concatenate([np.random.default_rng(1).normal(m, 0.3, (300, 2)) for m in (-2, 2)])
    gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    assert sorted(np.round(gm.means_[:, 0])) == [-2, 2], "gmm"

    import scipy.sparse as sp
    from asp_mpk import matrix_powers
    A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(200, 200), format="csr")
    x = np.ones(200)
    V = np.asarray(matrix_powers(A, x, 3))
    assert np.allclose(V[-1], A @ (A @ (A @ x))), "mpk"
    print("KERNELS OK")
""")


@pytest.mark.slow
@requires_compiler
def test_wheels_install_and_work_in_a_fresh_venv(tmp_path):
    sources = _copy_sources(tmp_path / "src")
    wheels = _build(sources, tmp_path / "wheels", isolation=False)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", f"{wheels['asp-core']}[new]",
          *(w for n, w in wheels.items() if n != "asp-core")])
    home = tmp_path / "home"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home),
           "ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_CONFIG": str(tmp_path / "none.toml")}
    where = _run([py, "-c", "import asp_core; print(asp_core.__file__)"], env=env, cwd=tmp_path)
    assert str(venv) in where.stdout, "asp_core was not imported from the venv"
    listing = _run([venv / "bin" / "asp", "list"], env=env, cwd=tmp_path).stdout
    for spec in ("stencil", "gmm", "mpk", "numpy"):
        assert spec in listing
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    assert "KERNELS OK" in _run([py, tmp_path / "user.py"], env=env, cwd=tmp_path).stdout
    _run([venv / "bin" / "asp", "new", "heat-spec", "--no-input", "-o", tmp_path / "new"],
         env=env, cwd=tmp_path)
    made = tmp_path / "new" / "heat-spec"
    assert (made / "pyproject.toml").exists() and (made / "src" / "heat_spec" / "plugin.py").exists()
    assert "asp-core>=0.1.0,<0.2" in (made / "pyproject.toml").read_text()
