"""The cluster a command runs on: a running scheduler (address or scheduler file), or an
embedded ``LocalCluster`` for the command; its dashboard link is printed."""

from __future__ import annotations

import contextlib
import sys

__all__ = ["add_cluster_arguments", "cluster_client"]


def add_cluster_arguments(parser) -> None:
    """``--scheduler ADDR | --scheduler-file F`` and the embedded cluster's size."""
    group = parser.add_argument_group("cluster (default: a LocalCluster for the command)")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", metavar="ADDR", help="a running Dask scheduler, e.g. tcp://node01:8786"
    )
    where.add_argument(
        "--scheduler-file",
        metavar="FILE",
        help="the JSON file `dask scheduler --scheduler-file FILE` wrote",
    )
    group.add_argument(
        "--workers", type=int, default=2, help="worker processes of the LocalCluster (2)"
    )
    group.add_argument(
        "--threads-per-worker", type=int, default=1, help="threads per LocalCluster worker (1)"
    )
    group.add_argument(
        "--memory-limit",
        default="auto",
        help="memory limit per LocalCluster worker, e.g. '4GiB' (default: an equal share)",
    )


@contextlib.contextmanager
def cluster_client(args, out=None):
    """Yield a ``distributed.Client`` for ``args``; print where its dashboard is."""
    out = sys.stdout if out is None else out
    from distributed import Client

    from ..distribute.client import local_cluster
    from ..distribute.transport import scheduler_workers

    if args.scheduler or args.scheduler_file:
        with Client(args.scheduler, scheduler_file=args.scheduler_file, timeout="30s") as client:
            n = len(scheduler_workers(client))
            print(f"scheduler {client.scheduler.address}: {n} workers", file=out)
            print(f"dashboard: {client.dashboard_link}", file=out, flush=True)
            yield client
        return
    with (
        local_cluster(args.workers, args.threads_per_worker, args.memory_limit) as cluster,
        Client(cluster) as client,
    ):
        from ..distribute import pin_workers_to_cores

        if args.threads_per_worker == 1:
            pin_workers_to_cores(client)
        print(
            f"LocalCluster: {args.workers} worker processes, {args.threads_per_worker} "
            "thread(s) each",
            file=out,
        )
        print(f"dashboard: {client.dashboard_link}", file=out, flush=True)
        yield client
