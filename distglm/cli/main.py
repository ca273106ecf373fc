"""The ``distglm`` command line: argument parsing, logging, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["build_parser", "main"]

#: exit codes: success, a failure while running, a usage error (argparse's own code)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

_DESCRIPTION = """\
Population classifier GLMs over stores of recording sessions (one Zarr group per session,
each with X (sample, feature), y (sample, output) and an `output` coordinate), fitted on a
Dask cluster: a LocalCluster started for the command, or a running scheduler.

exit codes: 0 success, 1 the command failed (message on stderr), 2 usage error"""

_EXAMPLES = """\
examples:
  distglm demo                                   # generate a store, fit it, summarise
  distglm info sessions.zarr                     # sessions, outputs, features, chunks, sizes
  distglm fit sessions.zarr --n-classes 3 --strength 1e-3 --out model.zarr
  distglm fit sessions.zarr --n-classes 3 --scheduler-file sched.json --out model.zarr
  distglm predict model.zarr sessions.zarr --out predictions.zarr
  distglm score model.zarr sessions.zarr --json
  distglm info s3://bucket/sessions.zarr --storage-options '{"anon": true}'"""


def _add_store(p, what="the store of sessions"):
    p.add_argument("store", help=f"{what}: a path or URL (s3://..., gs://...; fsspec's protocols)")
    p.add_argument(
        "--storage-options",
        metavar="JSON",
        help='fsspec options for a URL, e.g. \'{"anon": true}\' or \'{"client_kwargs": '
        '{"endpoint_url": "http://127.0.0.1:9000"}}\'',
    )


def _add_model_and_store(p):
    p.add_argument("model", help="a saved model (distglm fit --out, save_params)")
    _add_store(p)


def _sub(sub, name, help, examples):
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # also after the command (`distglm fit ... --debug`); SUPPRESS keeps the top-level value
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return p


def _add_fit(sub, add_cluster):
    p = _sub(
        sub,
        "fit",
        "fit a ClassifierPopulationGLM over every session of a store and save it",
        [
            "distglm fit sessions.zarr --n-classes 3 --out model.zarr",
            "distglm fit sessions.zarr --n-classes 3 --regularizer Lasso --strength 1e-3 "
            "--solver auto --cache-bytes '4 GiB' --scheduler tcp://node01:8786 --out model.npz",
        ],
    )
    _add_store(p)
    p.add_argument("--n-classes", type=int, required=True, help="distinct labels in y")
    p.add_argument(
        "--regularizer",
        default="UnRegularized",
        choices=["UnRegularized", "Ridge", "Lasso", "ElasticNet", "GroupLasso"],
    )
    p.add_argument("--strength", help="the regularizer strength (default: the regularizer's)")
    p.add_argument(
        "--solver",
        default=None,
        choices=["LBFGS", "GradientDescent", "ProximalGradient", "Newton", "auto"],
        help="default: the regularizer's (LBFGS or ProximalGradient)",
    )
    p.add_argument("--tol", type=float, help="tolerance on the relative objective gap")
    p.add_argument("--maxiter", type=int, help="most iterations")
    p.add_argument(
        "--feature-mask",
        metavar="FILE",
        help="0/1 mask: a .npy of shape (features, outputs[, classes]) in the store's order, or "
        "a Zarr/netCDF file of one variable with dims feature, output[, class]",
    )
    p.add_argument(
        "--cache-bytes",
        help="per worker chunk-cache budget: a fraction of its memory limit (0.5) or a size "
        "('4 GiB'); chunks past it are re-read on every pass",
    )
    p.add_argument("--checkpoint", metavar="FILE", help="write (and resume from) a checkpoint")
    p.add_argument("--out", required=True, metavar="MODEL", help=".npz file or Zarr directory")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / lines")
    add_cluster(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``distglm`` argument parser (its subcommands and their options)."""
    from .. import __version__
    from .cluster import add_cluster_arguments

    parser = argparse.ArgumentParser(
        prog="distglm",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"distglm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="of the distglm logger, written to stderr (INFO: one line per pass)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _sub(
        sub,
        "info",
        "describe a store: sessions, outputs, features, shapes, chunking, sizes",
        ["distglm info sessions.zarr", "distglm info sessions.zarr --json"],
    )
    _add_store(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    _add_fit(sub, add_cluster_arguments)

    p = _sub(
        sub,
        "predict",
        "write labels and probabilities per session (one Zarr group each), from the workers",
        ["distglm predict model.zarr sessions.zarr --out predictions.zarr"],
    )
    _add_model_and_store(p)
    p.add_argument("--out", required=True, metavar="PRED.zarr", help="the Zarr store to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_cluster_arguments(p)

    p = _sub(
        sub,
        "score",
        "score a saved model per session and per output (log-likelihood, McFadden's R2)",
        ["distglm score model.zarr sessions.zarr", "distglm score model.npz s3://b/s.zarr --json"],
    )
    _add_model_and_store(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_cluster_arguments(p)

    p = _sub(
        sub,
        "demo",
        "write a generated multi-session Zarr store, fit it on a LocalCluster, summarise",
        ["distglm demo", "distglm demo --sessions 8 --samples 200000 --workers 4"],
    )
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--samples", type=int, default=50_000, help="per session (on average)")
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--outputs", type=int, default=10, help="distinct output ids in total")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--strength", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-rows", type=int, default=16_384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default=None, help="write the store here (default: a temp dir)")
    p.add_argument(
        "--plots", default=None, help="write the plots here (default: ./distglm-demo-plots)"
    )
    return parser


def _configure_logging(level: str) -> None:
    """Send the distglm loggers to stderr (replacing the handler an earlier call added)."""
    logger = logging.getLogger("distglm")
    for old in [h for h in logger.handlers if h.get_name() == "distglm-cli"]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("distglm-cli")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def main(argv=None) -> int:
    """Entry point of the ``distglm`` command; returns its exit code."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on a usage error
    _configure_logging(args.log_level)
    warnings.filterwarnings("ignore", module="zarr")  # string dtypes lack a Zarr v3 spec
    from . import commands
    from .demo import run_demo

    run = {
        "info": commands.run_info,
        "fit": commands.run_fit,
        "predict": commands.run_predict,
        "score": commands.run_score,
        "demo": run_demo,
    }[args.command]
    try:
        return int(run(args))
    except KeyboardInterrupt:
        print(f"distglm {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:
        if args.debug:
            raise
        print(f"distglm {args.command}: error: {e}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
