"""Heavy batch work, in this process or on a Dask cluster.

Why it is built this way:

* **One setting.** ``[compute] cluster`` (or ``--cluster``) is ``none`` (this
  process), ``local[:N]`` (a ``distributed.LocalCluster`` of N worker processes) or the
  address of a running scheduler. :func:`~itap_engine.compute.cluster.open_executor`
  turns it into an :class:`~itap_engine.compute.cluster.Executor` that maps one task
  over a list of partitions; Dask is imported only when a cluster is named.
* **Partitions are device groups.** Features never cross devices, so the bootstrap
  history and backlog scoring are cut
  into groups of ``[compute] partition_devices`` devices (sorted ids). A task receives
  a device list, a time range and the settings, never a data frame: each worker reads
  from and writes to the database itself. The same partitions run one after the other
  with ``cluster = "none"``, which is also what bounds one process's memory.
* **Same result anywhere.** Every task computes per-device quantities, or hands back
  the values a fleet-wide median is taken of, and the driver combines their results
  in partition order (device order), so a cluster gives the feature builder, scores,
  thresholds and alerts of one process.
* **SQLite has one writer.** On a cluster, a task's writes to an SQLite database run
  under a ``distributed.Lock`` named after the database (plus its busy timeout), so two
  workers never race for the write lock; PostgreSQL needs no such lock.
"""
