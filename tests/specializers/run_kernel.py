"""Run an element-wise kernel in a fresh process and report what the core did, as JSON.

Used by the cross-process tests (cache concurrency, warm starts, stored autotuning winners)::

    python tests/specializers/run_kernel.py [--calls N] [--ready FILE --go FILE]

With ``--ready``/``--go`` the process writes FILE ready after its imports and waits for the go file,
so that many processes reach the first call at the same moment.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from asp_core import Dispatcher, plugins  # noqa: E402
from asp_core.decisions import VARIANT  # noqa: E402
from tests.specializers import elementwise  # noqa: E402


def kernel(a, b):
    return (a - b) * 0.5 + a * a


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1)
    ap.add_argument("--ready")
    ap.add_argument("--go")
    ns = ap.parse_args()
    plugins.register_plugin(elementwise, name="test-elementwise")
    d = Dispatcher("elementwise", kernel)
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(1000), rng.standard_normal(1000)
    if ns.ready:
        Path(ns.ready).write_text("ready")
        deadline = time.time() + 120
        while not Path(ns.go).exists():
            if time.time() > deadline:
                raise SystemExit("no go signal")
            time.sleep(0.002)
    ok = True
    t0 = time.perf_counter()
    for _ in range(ns.calls):
        ok &= bool(np.array_equal(d(a, b), (a - b) * 0.5 + a * a))
    seconds = time.perf_counter() - t0
    ctx = d.last_context
    bound = d.specializations.get((2,))
    print(json.dumps({
        "ok": ok,
        "seconds": seconds,
        "compiles": [{"cached": c.cached, "path": str(c.library.path), "variant": c.variant}
                     for c in (ctx.compiles if ctx else [])],
        "autotune": [{"winner": v.choice, "source": v.source}
                     for v in (ctx.decisions if ctx else []) if v.what == VARIANT],
        "bound": type(bound).__name__,
    }))


if __name__ == "__main__":
    main()
