"""Benchmarks of the core itself (issue 2): start-up, ``asp list``, dispatch overhead, cold and
warm first calls. Every figure is taken against an anchor measured in the same run.

    asp bench core --path benchmarks        # as a registered suite
    python benchmarks/bench_core.py [--quick]

* ``import asp_core`` in a new process, interleaved with ``python -c pass`` (the anchor);
* ``asp list`` with all installed plugins (and with autoload off), same anchor;
* a warm call of a tiny element-wise kernel through the :class:`~asp_core.Dispatcher`, against
  calling the bound C function directly through ctypes (and the backend's Python wrapper);
* the first call of a kernel in a new process with an empty cache (compile) and with a warm cache
  (load), against the same process's own import time.

The kernel is the core's test specializer (``tests/specializers/elementwise.py``): it is what the
core's tests drive through all five phases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from asp_core import hookimpl
from asp_bench import BenchContext

REPO = Path(__file__).resolve().parents[1]

_FIRST_CALL = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import asp_core
from asp_core import Dispatcher, plugins
sys.path.insert(0, {repo!r})
from tests.specializers import elementwise
plugins.register_plugin(elementwise, name="bench-elementwise")
t1 = time.perf_counter()
def kernel(a, b):
    return a * 2.0 + b
d = Dispatcher("elementwise", kernel)
a, b = np.ones(1000), np.arange(1000.0)
for k in range({calls}):
    r = d(a, b)
    if k == 0:
        t2 = time.perf_counter()
if not np.array_equal(r, a * 2.0 + b):
    raise SystemExit("the kernel returned a wrong result")
compiled = [c.cached for c in d.last_context.compiles]
print(json.dumps({{"import": t1 - t0, "first_call": t2 - t1, "cached": compiled}}))
"""


def _process(args: list[str], env: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return run


def _asp_list_command() -> list[str]:
    exe = shutil.which("asp")
    if exe:
        return [exe, "list"]
    return [sys.executable, "-c", "from asp_core.cli import main; main()", "list"]


def _startup(bench: BenchContext, env: dict[str, str], repeats: int) -> None:
    py = sys.executable
    impls = {
        "python -c pass": _process([py, "-c", "pass"], env),
        "import asp_core": _process([py, "-c", "import asp_core"], env),
        "asp list (all plugins)": _process(_asp_list_command(), env),
        "asp list (autoload off)": _process(_asp_list_command(),
                                            dict(env, ASP_DISABLE_PLUGIN_AUTOLOAD="1")),
    }
    rows = bench.compare("new process: start-up", impls, anchor="python -c pass",
                         repeats=repeats)
    best = {m.impl: m.best for m in rows}
    base = best["python -c pass"]
    bench.note(f"import asp_core: {best['import asp_core'] * 1e3:.0f} ms wall "
               f"({(best['import asp_core'] - base) * 1e3:.0f} ms beyond bare python; "
               f"target <= 150 ms)")
    for k in ("asp list (all plugins)", "asp list (autoload off)"):
        bench.note(f"{k}: {best[k] * 1e3:.0f} ms wall ({(best[k] - base) * 1e3:.0f} ms beyond "
                   f"bare python; target <= 300 ms)")


def _with_env(**values: str) -> Callable[[], None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)

    def restore() -> None:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return restore


def _dispatch(bench: BenchContext, repeats: int) -> None:
    import numpy as np

    from asp_core import Dispatcher, plugins

    sys.path.insert(0, str(REPO))
    from tests.specializers import elementwise

    pm = plugins.get_plugin_manager()
    if not pm.is_registered(elementwise):
        plugins.register_plugin(elementwise, name="bench-core-elementwise")
    restore = _with_env(ASP_AUTOTUNE="always")  # tuned here: serial wins for one element
    try:
        def tiny(x):
            return x + 1.0

        d = Dispatcher("elementwise", tiny)
        a = np.ones(1)
        for _ in range(20):
            d(a)
    finally:
        restore()
    bound = d.specializations[(1,)]
    cfn = bound.c_function
    out = np.empty(1)
    pa, po = a.ctypes.data, out.ctypes.data
    n = 2000 if bench.quick else 20000

    def loop(call: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                call()
        return run

    impls = {"C function via ctypes": loop(lambda: cfn(pa, po, 1)),
             "bound callable (backend)": loop(lambda: bound(a)),
             "Dispatcher (warm)": loop(lambda: d(a))}

    def check() -> bool:
        return bool(d(a)[0] == 2.0 and bound(a)[0] == 2.0)

    rows = bench.compare(f"warm call of a 1-element kernel, {n} calls", impls,
                         anchor="C function via ctypes", repeats=repeats, check=check)
    per = {m.impl: m.best / n * 1e6 for m in rows}
    bench.note(f"per call: ctypes {per['C function via ctypes']:.2f} us, bound "
               f"{per['bound callable (backend)']:.2f} us, dispatcher "
               f"{per['Dispatcher (warm)']:.2f} us -> dispatch overhead "
               f"{per['Dispatcher (warm)'] - per['C function via ctypes']:.2f} us over ctypes, "
               f"{per['Dispatcher (warm)'] - per['bound callable (backend)']:.2f} us over the "
               f"bound callable (target <= 20 us)")


def _first_call(cache: Path, env: dict[str, str], calls: int = 1) -> dict[str, Any]:
    script = cache.parent / f"first_call_{calls}.py"  # a file: the kernel needs its source
    if not script.exists():
        script.write_text(_FIRST_CALL.format(repo=str(REPO), calls=calls))
    proc = subprocess.run([sys.executable, str(script)],
                          env=dict(env, ASP_CACHE_DIR=str(cache), PYTHONWARNINGS="error"),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"first-call benchmark process failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cold_warm(bench: BenchContext, env: dict[str, str], repeats: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="asp-bench-core-"))
    try:
        warm_cache = tmp / "warm"
        _first_call(warm_cache, env, calls=12)  # compiles and tunes once: the cache is warm
        samples: dict[str, list[float]] = {"import (anchor)": [], "cold first call": [],
                                           "warm first call": []}
        for r in range(repeats):  # interleaved: cold, warm, cold, warm...
            cold = _first_call(tmp / f"cold{r}", env)
            warm = _first_call(warm_cache, env)
            if cold["cached"] != [False] or warm["cached"] != [True]:
                raise AssertionError(f"cold or warm cache not as set up: {cold}, {warm}")
            samples["import (anchor)"] += [cold["import"], warm["import"]]
            samples["cold first call"].append(cold["first_call"])
            samples["warm first call"].append(warm["first_call"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = bench.record("new process: first call of a kernel", samples, "import (anchor)")
    best = {m.impl: m.best for m in rows}
    bench.note(f"cold first call (empty cache: compile + load): "
               f"{best['cold first call'] * 1e3:.0f} ms (target <= 600 ms); warm first call "
               f"(cache hit): {best['warm first call'] * 1e3:.1f} ms beyond an import of "
               f"{best['import (anchor)'] * 1e3:.0f} ms (target <= 50 ms)")


def run_core_benchmarks(bench: BenchContext) -> None:
    """The core's suite: start-up, dispatch overhead, cold/warm first calls."""
    # --repeats wins over this suite's own counts (max(5, --repeats) ignored --repeats 2,
    # --quick any count)
    repeats = bench.repeats_for(3 if bench.quick else 5)
    env = dict(os.environ)
    env.pop("ASP_MODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory(prefix="asp-bench-start-") as cache:
        _startup(bench, dict(env, ASP_CACHE_DIR=cache), repeats)
    _dispatch(bench, repeats)
    _cold_warm(bench, env, repeats)


@hookimpl
def asp_register_benchmarks(register: Any) -> None:
    register.benchmark(name="core", func=run_core_benchmarks, specializer="",
                       description="asp_core start-up, dispatch overhead, cold/warm first call")


def main(argv: list[str]) -> None:
    bench = BenchContext("core", quick="--quick" in argv)
    print("core: start-up, dispatch overhead, cold/warm first call")
    t0 = time.perf_counter()
    run_core_benchmarks(bench)
    print(f"  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
