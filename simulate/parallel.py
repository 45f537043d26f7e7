"""Run a simulation's jobs (full training, strategy x seed) in parallel worker processes.

A job's results depend only on its (job, seed), the run folder's settings and M0 (see
:mod:`simulate.experiment`), never on the other jobs, so independent jobs can run side by side. One
fine-tuning step of the cached top block keeps a 2-core CPU only ~1.3 cores busy; two worker processes
of one TensorFlow thread each run about 1.7x as many rounds in the same time (benchmarks/RESULTS.md).

Each worker is a fresh ("spawn") process that opens the run folder and the store once (through the
``make_worker`` factory the caller passes, :func:`simulate.experiment.worker_experiment`: this module never
imports :mod:`simulate.experiment`), runs whole jobs and writes their state folders as the sequential loop
does; the parent owns rounds.csv and the progress display and writes them as jobs finish. The results
equal the sequential run's: oneDNN's CPU kernels give the same numbers at 1 and 2 threads (checked by
tests/test_parallel.py).

Example::

    from simulate.parallel import resolve_workers
    resolve_workers("auto", pending_jobs=33)   # one per CPU core (at most MAX_AUTO_WORKERS)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from aift_tf.checks import check_int
from aift_tf.errors import AiftError

#: ``--workers auto`` starts one worker per CPU core, at most this many (each holds ~0.8 GB of TensorFlow)
MAX_AUTO_WORKERS = 4

# the worker process's experiment (made by _init_worker with the caller's factory)
_experiment = None


def cpu_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def check_workers(workers, distribute: str = "none"):
    """``"auto"`` (also for None) or the int >= 1 given; more than 1 with a tf.distribute strategy is refused."""
    if workers is None or (isinstance(workers, str) and workers.strip().lower() == "auto"):
        return "auto"
    n = check_int(workers, "workers", 1, coerce=True)
    if n > 1 and distribute != "none":
        raise AiftError(f"workers must be 1 with distribute {distribute!r} (the strategy spreads each job "
                        f"over the devices); got {n}")
    return n


def resolve_workers(workers, pending_jobs: int, distribute: str = "none") -> int:
    """The number of worker processes: ``workers`` (an int >= 1, or "auto"), never more than the jobs.

    "auto" is one per CPU core, at most :data:`MAX_AUTO_WORKERS`, and 1 with a tf.distribute strategy
    (which spreads one job over the devices itself).
    """
    n = check_workers(workers, distribute)
    if n == "auto":
        n = 1 if distribute != "none" else min(cpu_cores(), MAX_AUTO_WORKERS)
    return max(1, min(n, int(pending_jobs)))


def _die_with_parent(parent: int) -> None:
    """Linux: the worker is killed when aift-sim dies (even by SIGKILL), so a later ``--resume`` never runs
    beside an orphan still writing the same job's state."""
    import signal

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(make_worker: Callable, out: str, store_path: str, trunk_dir: Optional[str], threads: int,
                 parent: int) -> None:
    global _experiment
    _die_with_parent(parent)
    from aift_tf.cli_support import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    for gpu in tf.config.list_physical_devices("GPU"):  # workers share a GPU: take memory as needed
        tf.config.experimental.set_memory_growth(gpu, True)
    _experiment = make_worker(Path(out), Path(store_path), trunk_dir)


def _run_job(name: str, seed: int) -> dict:
    return _experiment.run_job(name, seed)


def run_jobs(jobs: Iterable[tuple], workers: int, *, make_worker: Callable, out: Path, store_path: Path, trunk_dir,
             on_done: Callable[[tuple, dict], None]) -> None:
    """Run ``jobs`` ((name, seed) pairs, in order of submission) on ``workers`` processes and call
    ``on_done((name, seed), result)`` in the parent as each finishes (in the order they finish).

    ``make_worker(out, store_path, trunk_dir)`` builds each worker's experiment (an object with
    ``run_job(name, seed) -> dict``) once per process; it is sent to the worker by reference, so it must be a
    module-level function (:func:`simulate.experiment.worker_experiment`) whose module imports no TensorFlow
    (the worker quiets TensorFlow's start-up logs after the factory's module is imported).

    An error in a job (or Ctrl-C) stops the workers and is raised here; every round they finished is saved,
    so ``--resume`` continues from there.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    jobs = list(jobs)
    before = {proc.pid for proc in multiprocessing.active_children()}  # not ours: never stopped here
    threads = max(1, cpu_cores() // max(1, workers))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(make_worker, str(out), str(store_path),
                                         None if trunk_dir is None else str(trunk_dir), threads, os.getpid()))
    try:
        pending = {pool.submit(_run_job, name, int(seed)): (name, int(seed)) for name, seed in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise AiftError(f"a worker process died while running {job[0]} seed {job[1]} (out of memory?); "
                                    f"continue with --resume, with fewer --workers") from None
                on_done(job, result)
    except BaseException:
        # Ctrl-C or a failed job: stop now rather than after the running jobs' remaining rounds; every round
        # a worker finished is saved atomically (a half-written one is a temporary that --resume removes)
        pool.shutdown(wait=False, cancel_futures=True)
        ours = [proc for proc in multiprocessing.active_children() if proc.pid not in before]
        for proc in ours:
            proc.terminate()
        for proc in ours:
            proc.join(timeout=30)
        raise
    pool.shutdown(wait=True)
