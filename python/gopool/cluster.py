"""Cluster mode: ``Pool(cluster=...)`` runs the pool's tasks on a Dask cluster.

The pool keeps its API, its result classes and its semantics: each Dask task
carries one already encoded gopool task (an ``apply``, or a chunk of a map)
to a gopool agent inside the Dask worker, which runs it in a node-local gopool
worker process started by the Go core. Cancel, time limits, worker deaths,
``initializer``, ``maxtasksperchild`` and ``max_memory_per_child`` are
therefore enforced on the node by the same code as locally. Dask only places
the tasks and moves their bytes.

``cluster`` takes:

- ``"tcp://host:8786"`` (any address Dask's ``Client`` accepts): an existing
  scheduler; gopool connects, and disconnects when the pool is joined;
- a ``distributed.Client``: used as it is, never closed by gopool;
- ``"dask:local"``: gopool starts a ``LocalCluster`` on the loopback
  interface (one single-threaded worker process per pool process) and shuts
  it down when the pool is joined or released;
- a :class:`Dask` object, for options (connect timeout, TLS security, the
  size of a local cluster).

``GOPOOL_CLUSTER`` in the environment gives the default for ``Pool()``
(never for ``ThreadPool``), so an unchanged program runs on a cluster.
Cluster mode is opt-in because it opens network connections and unpickles
what the cluster sends back; it needs ``pip install gopool[dask]`` here and
the same gopool version on every Dask worker.
"""

from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["Dask", "ClusterError", "ShortChunkWarning", "DEFAULT_CONNECT_TIMEOUT", "ENVIRONMENT_VARIABLE"]

ENVIRONMENT_VARIABLE = "GOPOOL_CLUSTER"

# Dask's own default is 30 s; a pool that cannot reach its scheduler should
# say so sooner.
DEFAULT_CONNECT_TIMEOUT = 10.0

LOCAL = "dask:local"


class ClusterError(RuntimeError):
    """The cluster cannot run the pool's tasks: its scheduler is unreachable
    or was lost, its workers lack gopool (or run another version), or it has
    no workers."""


class ShortChunkWarning(UserWarning):
    """A cluster pool's tasks take much less time on the workers than a round
    trip to the cluster: most of the time goes to overhead. Pass a larger
    ``chunksize``."""


class Dask:
    """A Dask cluster for ``Pool(cluster=...)``, with options.

    ``address``: a scheduler address (``"tcp://host:8786"``, ``"tls://..."``)
    or ``"dask:local"``; or pass ``client``, a ``distributed.Client`` the
    program already has (gopool never closes it). ``security``: Dask's
    ``distributed.Security`` (TLS), passed through to the ``Client``.
    ``connect_timeout``: seconds to reach the scheduler, and to wait for a
    first worker. ``n_workers``: for ``"dask:local"``, the number of worker
    processes (default: the pool's size).
    """

    def __init__(self, address: Optional[str] = None, *, client: Any = None, security: Any = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, n_workers: Optional[int] = None):
        if (address is None) == (client is None):
            raise ValueError("give a scheduler address or a distributed.Client, not both or neither")
        if address is not None and not isinstance(address, str):
            raise TypeError("address must be a string such as 'tcp://host:8786' or 'dask:local'")
        if not isinstance(connect_timeout, (int, float)) or connect_timeout <= 0:
            raise ValueError("connect_timeout must be a positive number of seconds")
        if n_workers is not None and (not isinstance(n_workers, int) or n_workers < 1):
            raise ValueError("n_workers must be a positive int or None")
        if n_workers is not None and address != LOCAL:
            raise ValueError("n_workers is only for a local cluster ('dask:local')")
        self.address = address
        self.client = client
        self.security = security
        self.connect_timeout = float(connect_timeout)
        self.n_workers = n_workers

    @property
    def local(self) -> bool:
        """Whether gopool starts (and owns) the cluster."""
        return self.address == LOCAL

    def __repr__(self) -> str:
        target = self.address if self.client is None else repr(self.client)
        return f"gopool.cluster.Dask({target})"


def resolve(cluster: Any) -> Optional[Dask]:
    """The cluster a Pool runs on: ``cluster`` as given, else
    ``GOPOOL_CLUSTER``; None for a local pool."""
    if cluster is None:
        cluster = os.environ.get(ENVIRONMENT_VARIABLE) or None
        if cluster is None:
            return None
    if isinstance(cluster, Dask):
        return cluster
    if isinstance(cluster, str):
        if cluster == LOCAL or "://" in cluster:
            return Dask(cluster)
        raise ValueError(
            f"cluster={cluster!r}: expected a Dask scheduler address such as 'tcp://host:8786', "
            "'dask:local', a distributed.Client or a gopool.cluster.Dask"
        )
    if type(cluster).__name__ == "Client" and hasattr(cluster, "submit") and hasattr(cluster, "scheduler"):
        return Dask(client=cluster)
    raise TypeError(
        f"cluster must be a scheduler address, 'dask:local', a distributed.Client or a "
        f"gopool.cluster.Dask, not {type(cluster).__name__}"
    )
