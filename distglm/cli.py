"""The ``distglm`` command.

``distglm demo`` generates a population classification problem in memory (several outputs with
string class labels sharing one design), fits ``ClassifierPopulationGLM`` and prints a summary.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

__all__ = ["main", "make_population"]


def make_population(n_samples, n_features, n_outputs, n_classes, seed=0, scale=0.3):
    """Generate a softmax population problem with known coefficients.

    Parameters
    ----------
    n_samples, n_features, n_outputs, n_classes : int
    seed : int
    scale : float
        Standard deviation of the true coefficients.

    Returns
    -------
    X : float32 array of shape (n_samples, n_features), standard normal
    y : int array of shape (n_samples, n_outputs)
    coef : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(np.float32)
    coef = rng.normal(0.0, scale, (n_features, n_outputs, n_classes))
    intercept = rng.normal(0.0, 0.3, (n_outputs, n_classes))
    eta = np.einsum("np,pkc->nkc", X, coef) + intercept
    y = np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)
    return X, y, coef, intercept


def _demo(args):
    import distglm

    labels = np.array(
        ["left", "nogo", "right"][: args.classes]
        if args.classes <= 3
        else [f"class{i}" for i in range(args.classes)]
    )
    X, y, coef, _ = make_population(args.samples, args.features, args.outputs, args.classes)
    y_str = labels[y]
    model = distglm.ClassifierPopulationGLM(
        n_classes=args.classes, regularizer="Ridge", regularizer_strength=args.strength
    )
    print(
        f"distglm {distglm.__version__}: fitting {args.outputs} outputs x {args.classes} classes "
        f"on {args.samples:,} samples x {args.features} features (Ridge {args.strength:g})"
    )
    start = time.perf_counter()
    model.fit(X, y_str)
    elapsed = time.perf_counter() - start
    acc = np.mean(np.asarray(model.predict(X)) == y_str, axis=0)
    r2 = float(model.score(X, y_str, score_type="pseudo-r2-McFadden"))
    est = np.asarray(model.coef_)
    centred_true = coef - coef.mean(axis=2, keepdims=True)
    corr = np.corrcoef(est.ravel(), centred_true.ravel())[0, 1]
    print(f"classes_: {[str(c) for c in model.classes_]}")
    print(f"fit: {elapsed:.2f} s, {len(model.fit_history_)} iterations, {model.n_passes_} passes")
    print(f"objective at the optimum: {model.fit_history_[-1]['objective']:.6f}")
    print(f"accuracy per output: mean {acc.mean():.3f} (min {acc.min():.3f}, max {acc.max():.3f})")
    print(f"McFadden pseudo-R2: {r2:.4f}")
    print(f"correlation of recovered and true (class-centred) coefficients: {corr:.3f}")
    return 0


def main(argv=None):
    """Entry point of the ``distglm`` command."""
    parser = argparse.ArgumentParser(prog="distglm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a generated population problem and print a summary")
    demo.add_argument("--samples", type=int, default=50_000)
    demo.add_argument("--features", type=int, default=20)
    demo.add_argument("--outputs", type=int, default=8)
    demo.add_argument("--classes", type=int, default=3)
    demo.add_argument("--strength", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
