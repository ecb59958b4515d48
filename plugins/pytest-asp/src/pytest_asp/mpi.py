"""Launching ``mpiexec -n N python script.py`` from a test or a benchmark, with a hard timeout.

A hung MPI job must fail its test instead of hanging CI: the launch runs in its own session, so
on expiry one ``killpg`` reaches mpiexec and every rank.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from asp_core.mpi import MPI_INSTALL_HINT, MPIUnavailable, find_mpiexec

__all__ = ["MPIRun", "assert_every_rank_prints", "run_mpi"]


@dataclass
class MPIRun:
    """The outcome of :func:`run_mpi`."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def lines(self, prefix: str) -> Iterator[str]:
        """Lines of stdout starting with ``prefix`` (scripts report results this way)."""
        return (ln for ln in self.stdout.splitlines() if ln.startswith(prefix))

    def describe(self) -> str:
        state = "timed out" if self.timed_out else f"exit code {self.returncode}"
        return (f"{' '.join(self.command)}: {state} after {self.seconds:.1f} s\n"
                f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-6000:]}")


def run_mpi(script_or_module: str | os.PathLike[str], nprocs: int, timeout: float = 60.0, *,
            args: Sequence[str] = (), module: bool = False, env: dict[str, str] | None = None,
            check: bool = False, cwd: str | os.PathLike[str] | None = None) -> MPIRun:
    """Run ``mpiexec -n nprocs python script args`` (or ``python -m module``), with a timeout.

    On timeout every process of the launch is killed and ``timed_out`` is set; ``check=True``
    raises ``RuntimeError`` with both output streams when the run failed or timed out. ``env``
    is added to the current environment; ``OMP_NUM_THREADS`` defaults to 1 so that ranks do
    not oversubscribe the cores.
    """
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise MPIUnavailable(f"mpiexec not found next to {sys.executable} or on PATH; "
                             f"{MPI_INSTALL_HINT}")
    if int(nprocs) < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    target = ["-m", str(script_or_module)] if module else [str(script_or_module)]
    cmd = [mpiexec, "-n", str(int(nprocs)), sys.executable, *target, *map(str, args)]
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env.update(env or {})
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=cwd, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - ended just now
            pass
        out, err = proc.communicate()
    result = MPIRun(cmd, proc.returncode if not timed_out else -9, out, err,
                    time.perf_counter() - start, timed_out)
    if check and not result.ok:
        raise RuntimeError(result.describe())
    return result


def assert_every_rank_prints(script_text: str, marker: str, nprocs: int,
                             workdir: str | os.PathLike[str], timeout: float = 120.0) -> MPIRun:
    """Run ``script_text`` on ``nprocs`` ranks (written to ``workdir``, with an empty cache
    there and tuning off, so a test sees its own compiles and no stored winners) and assert
    that it ended cleanly with every rank having printed ``<marker> rank <r>``: the check a
    script's own asserts cannot make when a rank dies or hangs before reaching them."""
    work = Path(workdir)
    script = work / "script.py"
    script.write_text(script_text, encoding="utf-8")
    run = run_mpi(script, nprocs, timeout=timeout,
                  env={"ASP_CACHE_DIR": str(work / "cache"), "ASP_AUTOTUNE": "off"})
    assert run.ok, run.describe()
    for r in range(nprocs):
        assert f"{marker} rank {r}" in run.stdout, run.describe()
    return run
