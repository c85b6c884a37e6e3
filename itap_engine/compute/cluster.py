"""Executors: where the partitions of a batch job run.

:func:`open_executor` reads ``[compute] cluster`` (or an override such as
``--cluster``) and yields an :class:`Executor`: :class:`LocalExecutor` runs tasks one
after the other in this process, :class:`DaskExecutor` submits them to a Dask
``distributed`` cluster (a ``LocalCluster`` it starts and stops, or a running
scheduler). Both return results in task order and call ``progress(done, total)`` as
tasks finish.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from itap_engine.config import CLUSTER_HELP, Settings, check_cluster
from itap_engine.errors import ItapError

if TYPE_CHECKING:
    from itap_engine.store.protocol import TelemetryStore

TaskProgress = Callable[[int, int], None]
"""``progress(done, total)``: called after each finished task."""

DASK_MISSING = "cluster {spec!r} needs Dask, which is not installed: install the dask extra (pip install 'itap[dask]')"


QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    # glibc's own malloc tuning in the workers, as in one process (see below)
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}
"""A LocalCluster's own background work, cut: no statistical profiler sampling every
task's stack each 10 ms, no GIL monitor, the system monitor every 5 s instead of 0.5 s
and the memory monitor every 1 s instead of 0.1 s.
Nobody reads them here, and on a busy 2-core machine the cluster's idle CPU (scheduler,
two nannies, two workers) was ~0.08 of a core, 2.4 CPU s per 30 s, against 1.75 with
these, measured with psutil over each process in the same minutes.

And the workers' allocator is left as it is in one process. Dask's nannies start
every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory back to the
OS); setting that fixes glibc's mmap threshold at 128 KiB, so every numpy temporary
above it (the features of a device group: MBs each) is a fresh ``mmap``, page-faulted
and zeroed, and unmapped again when freed. A backlog scoring task of 50 devices took
~5x the page faults and ~1.35x the CPU seconds of the same task in one process
(thread CPU 3.5-4.1 s against 2.4-3.0 s, 520-540k minor faults against 20-120k;
probe of ``score_partition`` on 200 devices x 12 h, 2026-11-27, load 4). Unset
(None, which the nanny skips; a value in the environment still wins) it is glibc's
default, whose threshold adapts to the sizes the task frees."""


WORKER_MODULES = (
    "itap_engine.compute.score",
    "itap_engine.compute.simulate",
    "itap_engine.compute.train",
    "itap_engine.detection.scoring",
    "itap_engine.evaluation.labelled",
    "itap_engine.evaluation.skab_engine",
)
"""What the tasks import (scikit-learn and scipy through the feature builder: ~2.5 CPU s
per process), preloaded once by the forkserver a LocalCluster's workers fork from."""


def worker_start_method() -> str:
    """How a ``LocalCluster`` starts its workers: ``forkserver`` where there is one.

    Dask's default (``spawn``) starts every worker as a fresh interpreter that imports
    distributed, then its first task imports pandas, scikit-learn and the engine:
    2.5-3 CPU s per worker, paid again by every command (``itap generate``, ``train``,
    ``score`` each start a cluster). With ``forkserver``, one server process imports
    all of that once (:data:`WORKER_MODULES`, plus what distributed itself preloads)
    and each worker is a fork of it: a LocalCluster of 2 workers and their first
    tasks took 3.1 CPU s instead of 5.6-6.2 (psutil over the driver and its children,
    2026-11-27, load 5). Where ``forkserver`` does not exist (Windows) it stays
    ``spawn``. The server is started with the nanny's worker environment (one BLAS
    thread) and exits with this process.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    import dask
    from distributed.utils import get_mp_context
    from distributed.versions import optional_packages, required_packages

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        context = get_mp_context()  # distributed sets its own preload list once: ours replaces it
    context.set_forkserver_preload(["distributed", *required_packages, *optional_packages, *WORKER_MODULES])  # type: ignore[attr-defined]
    return "forkserver"


class ComputeError(ItapError):
    """A cluster could not be started or reached, or Dask is missing; one line."""


@dataclass(frozen=True)
class Partition:
    """One unit of batch work: a group of devices of one profile."""

    index: int
    count: int
    devices: tuple[str, ...]


def partitions(device_ids: Sequence[str], size: int) -> list[Partition]:
    """Sorted, distinct device ids cut into groups of ``size`` (the last may be smaller)."""
    ids = sorted({str(d) for d in device_ids})
    size = max(1, int(size))
    chunks = [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]
    return [Partition(i, len(chunks), chunk) for i, chunk in enumerate(chunks)]


class Executor(Protocol):
    name: str
    """The cluster setting this executor serves (``none``, ``local:2``, an address)."""
    workers: int

    def map(
        self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], progress: TaskProgress | None = None
    ) -> list[Any]:
        """``[fn(*args) for args in tasks]``, wherever the executor runs them."""
        ...

    def sklearn_backend(self) -> contextlib.AbstractContextManager[Any]:
        """Where scikit-learn's joblib parallelism runs inside the block."""
        ...


class LocalExecutor:
    """Runs tasks in this process, one after the other (``cluster = "none"``)."""

    name = "none"
    workers = 1

    def sklearn_backend(self) -> contextlib.AbstractContextManager[Any]:
        """scikit-learn's own default (one process)."""
        return contextlib.nullcontext()

    def map(
        self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], progress: TaskProgress | None = None
    ) -> list[Any]:
        results = []
        for i, args in enumerate(tasks):
            results.append(fn(*args))
            if progress is not None:
                progress(i + 1, len(tasks))
        return results


class DaskExecutor:
    """Submits tasks to a ``distributed.Client``; results come back in task order.

    A failed task cancels the others and its exception is raised here, as it would
    be in one process.
    """

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        self.workers = max(1, len(client.scheduler_info().get("workers", {})))

    def sklearn_backend(self) -> contextlib.AbstractContextManager[Any]:
        """joblib's Dask backend on this client, one job per worker: scikit-learn's
        parallel loops (IsolationForest's trees) run on the cluster's workers. The
        trees' seeds are drawn before they are dispatched, so the forest is the one a
        single process grows."""
        import joblib

        return joblib.parallel_config(backend="dask", n_jobs=self.workers)

    def map(
        self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], progress: TaskProgress | None = None
    ) -> list[Any]:
        from distributed import as_completed

        if not tasks:
            return []
        futures = [self.client.submit(fn, *args, pure=False) for args in tasks]
        where = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        done = 0
        try:
            for future in as_completed(futures):
                results[where[future.key]] = future.result()
                done += 1
                if progress is not None:
                    progress(done, len(futures))
        except BaseException:
            self.client.cancel(futures)
            raise
        return results


class PassProgress:
    """One progress count over several passes of the same tasks.

    Training maps its device groups three times (fleet statistics, device
    statistics, validation) and a simulated evaluation a fourth time (the replay);
    each pass reports ``(done, len(tasks))`` on its own. Handed to one bar, that was
    1..N of N three times over. This adds the passes up: pass ``k`` of ``passes`` over
    N tasks reports ``((k - 1) N + done, passes N)``, so ``done`` only grows, the
    total stays put and reaches itself once, at the end. A pass that did not run
    (:meth:`finish`) ends the count at the tasks that did; an unforeseen extra pass
    extends the total.
    """

    def __init__(self, progress: TaskProgress, passes: int) -> None:
        self._progress = progress
        self._passes = max(1, int(passes))
        self._started = 0
        self._finished = 0
        """Tasks of the passes that completed."""
        self._last: tuple[int, int] | None = None

    def next_pass(self, count: int) -> TaskProgress:
        """The callback for the next pass, of ``count`` tasks."""
        self._started += 1
        offset = self._finished
        to_come = max(0, self._passes - self._started) * count

        def update(done: int, total: int) -> None:
            self._report(offset + done, offset + total + to_come)
            if done >= total:
                self._finished = offset + total

        return update

    def finish(self) -> None:
        """End the count at what ran, if a foreseen pass did not run."""
        if self._last is not None and self._last[0] != self._last[1]:
            self._report(self._finished, self._finished)

    def _report(self, done: int, total: int) -> None:
        if (done, total) != self._last:
            self._last = (done, total)
            self._progress(done, total)


class GroupMap:
    """The ``map_groups`` of :func:`group_map`: the executor's map, with one progress
    count over all its passes."""

    def __init__(self, executor: Executor, progress: TaskProgress | None, passes: int) -> None:
        self.executor = executor
        self.counter = PassProgress(progress, passes) if progress is not None else None

    def __call__(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]) -> list[Any]:
        update = self.counter.next_pass(len(tasks)) if self.counter is not None else None
        return self.executor.map(fn, tasks, update)

    def finish(self) -> None:
        """End the progress count (see :meth:`PassProgress.finish`)."""
        if self.counter is not None:
            self.counter.finish()


def group_map(executor: Executor, progress: TaskProgress | None = None, passes: int = 1) -> GroupMap | None:
    """The ``map_groups`` that detection and evaluation take: the executor's map on a
    cluster; None in one process, where they use the data they already hold.

    ``passes``: how many times the caller maps its groups (training: three); the
    progress then counts the tasks of every pass against one total
    (:class:`PassProgress`)."""
    if executor.name == "none":
        return None
    return GroupMap(executor, progress, passes)


def cluster_spec(settings: Settings, override: str | None = None) -> str:
    """The cluster to use: ``override`` (``--cluster``) or ``[compute] cluster``."""
    value = override if override else settings.compute.cluster
    try:
        return check_cluster(value)
    except ValueError as error:
        raise ComputeError(f"--cluster {error}") from None


def local_workers(spec: str) -> int:
    """Worker processes for ``local`` (one per core, at most 4) or ``local:N``."""
    if ":" in spec:
        return int(spec.split(":", 1)[1])
    return max(1, min(os.cpu_count() or 1, 4))


class _StderrWithFileno:
    """``stream`` (a console's print capture) with a real file descriptor to report."""

    def __init__(self, stream: Any, fd: int) -> None:
        self._stream = stream
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker while ``sys.stderr`` has a usable descriptor.

    A ``LocalCluster``'s nannies create semaphores, whose first use starts the resource
    tracker process; that passes ``sys.stderr.fileno()`` to the child it spawns. Inside
    the console, Textual has replaced ``sys.stderr`` by a print capture whose
    ``fileno()`` is -1, so the spawn failed ("bad value(s) in fds_to_keep") and the
    console's bootstrap reported "Nanny failed to start". Here the tracker starts once,
    before the cluster, with ``/dev/null`` as the descriptor it is handed (writes
    still go to the capture); elsewhere this only starts it early.
    """
    from multiprocessing import resource_tracker

    stream = sys.stderr
    try:
        usable = stream is not None and stream.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        usable = True  # the tracker skips a stream without fileno() itself
    if usable:
        resource_tracker.ensure_running()
        return
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr = _StderrWithFileno(stream, fd)
        try:
            resource_tracker.ensure_running()
        finally:
            if isinstance(sys.stderr, _StderrWithFileno):
                sys.stderr = stream
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_executor(settings: Settings, override: str | None = None) -> Iterator[Executor]:
    """The executor for ``[compute] cluster`` (or ``override``), closed on exit.

    Raises:
        ComputeError: Dask is not installed, the scheduler cannot be reached, or the
            setting is not one of the allowed forms.
    """
    spec = cluster_spec(settings, override)
    if spec == "none":
        yield LocalExecutor()
        return
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ComputeError(DASK_MISSING.format(spec=spec)) from None
    with contextlib.ExitStack() as stack:
        if spec.startswith("local"):
            stack.enter_context(_forkserver_user())
        cluster = None
        try:
            if spec.startswith("local"):
                start_resource_tracker()
                method = {"distributed.worker.multiprocessing-method": worker_start_method()}
                with dask.config.set({**QUIET_CLUSTER, **method}):  # the nannies hand it to their workers
                    cluster = LocalCluster(
                        n_workers=local_workers(spec),
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=":0",  # None does not disable it (dask/distributed#8136): a free port
                        silence_logs=logging.ERROR,
                    )
                client = Client(cluster)
            else:
                client = Client(spec, timeout="10s")
        except (OSError, TimeoutError, RuntimeError) as error:
            logging.getLogger(__name__).warning("Dask cluster %s: %s", spec, error, exc_info=True)
            if cluster is not None:
                cluster.close()
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if spec.startswith("local"):
                raise ComputeError(f"cannot start a Dask LocalCluster ({spec}): {reason}") from None
            raise ComputeError(
                f"cannot reach Dask scheduler {spec}: {reason}; start one (dask scheduler) or use {CLUSTER_HELP}"
            ) from None
        try:
            yield DaskExecutor(client, spec)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


_FORKSERVER_USERS = 0
"""LocalClusters of this process open now (tests and a console may hold several)."""
_FORKSERVER_LOCK = threading.Lock()


@contextlib.contextmanager
def _forkserver_user() -> Iterator[None]:
    """Hold the forkserver while a LocalCluster runs; the last one out stops it."""
    global _FORKSERVER_USERS
    with _FORKSERVER_LOCK:
        _FORKSERVER_USERS += 1
    try:
        yield
    finally:
        with _FORKSERVER_LOCK:
            _FORKSERVER_USERS -= 1
            if _FORKSERVER_USERS == 0:
                stop_forkserver()


def stop_forkserver() -> None:
    """Stop the forkserver a LocalCluster's workers forked from, once they are gone.

    multiprocessing leaves it running until this process exits, and then does not
    wait for it. Stopped and waited for here, once the last LocalCluster using it has
    closed (stopped under live workers, it would leave their nannies waiting), it no
    longer holds its preloaded modules' memory for the rest of a console session, and
    its CPU time and its workers' (it reaps them) count in this process's children,
    where ``/usr/bin/time`` and the bench read them. No forkserver: nothing to do.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is not None and getattr(server, "_forkserver_pid", None) is not None:
        stop()


def _on_worker() -> bool:
    try:
        from distributed import get_worker
    except ImportError:
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def write_lock(store: TelemetryStore) -> Iterator[None]:
    """Serialise a task's writes to an SQLite database across the cluster's workers.

    SQLite allows one writer; its busy timeout makes a second writer wait, but a
    transaction that read before it writes can still fail at once when another
    process wrote in between. Tasks on Dask workers therefore take a
    ``distributed.Lock`` named after the database before writing. In one process (or
    on PostgreSQL) there is nothing to serialise.
    """
    if not store.is_sqlite or not _on_worker():
        yield
        return
    from distributed import Lock

    with Lock(f"itap-sqlite-writer:{store.url}"):
        yield
