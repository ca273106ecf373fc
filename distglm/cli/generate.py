"""Generated problems with known coefficients: the demo's data, and the tests' and
benchmarks' recipes."""

from __future__ import annotations

import numpy as np

__all__ = ["make_ill_conditioned", "make_population", "make_sessions"]


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


def make_ill_conditioned(
    n_samples, n_features, n_outputs, n_classes, seed=0, scale=0.3, rho=0.95, decades=3.0
):
    """Like :func:`make_population`, with correlated and badly scaled features.

    Features follow an AR(1) sequence along the feature axis (correlation ``rho`` between
    neighbours) and are then scaled by factors spread log-uniformly over ``decades`` decades,
    so the design's second moment has a condition number in the millions: the case where
    unpreconditioned first-order solvers crawl.

    Returns
    -------
    X, y, coef, intercept : as :func:`make_population` (``coef`` on the scaled features).
    """
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_samples, n_features))
    X0 = np.empty_like(Z)
    X0[:, 0] = Z[:, 0]
    for j in range(1, n_features):
        X0[:, j] = rho * X0[:, j - 1] + np.sqrt(1 - rho**2) * Z[:, j]
    scales = 10.0 ** np.linspace(-decades / 2, decades / 2, n_features)
    coef0 = rng.normal(0.0, scale, (n_features, n_outputs, n_classes))
    intercept = rng.normal(0.0, 0.3, (n_outputs, n_classes))
    eta = np.einsum("np,pkc->nkc", X0, coef0) + intercept
    y = np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)
    return (X0 * scales).astype(np.float32), y, coef0 / scales[:, None, None], intercept


def make_sessions(
    n_sessions, n_samples, n_features, n_outputs, n_classes, seed=0, scale=0.3, chunk_rows=None
):
    """Generate recording sessions that share a feature space and overlapping outputs.

    Each session records a contiguous (wrapping) window of about 60% of the outputs, so
    neighbouring sessions share outputs; labels are strings. One true model generates all.

    Parameters
    ----------
    n_sessions, n_samples, n_features, n_outputs, n_classes : int
        ``n_samples`` is per session (sessions get 60%-140% of it, so lengths differ).
    seed : int
    scale : float
        Standard deviation of the true coefficients.
    chunk_rows : int, optional
        Row chunking of the Datasets (dask-backed) when given.

    Returns
    -------
    sessions : dict of str -> xarray.Dataset
        ``X`` (sample, feature) float32, ``y`` (sample, output) strings, coords ``feature``
        and ``output``.
    coef : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    output_ids : list of str
    labels : array of shape (n_classes,)
    """
    import xarray as xr

    rng = np.random.default_rng(seed)
    labels = np.array(
        ["left", "nogo", "right"][:n_classes]
        if n_classes <= 3
        else [f"class{i}" for i in range(n_classes)]
    )
    coef = rng.normal(0.0, scale, (n_features, n_outputs, n_classes))
    intercept = rng.normal(0.0, 0.3, (n_outputs, n_classes))
    ids = [f"unit{j:02d}" for j in range(n_outputs)]
    width = max(1, round(0.6 * n_outputs))
    sessions = {}
    for s in range(n_sessions):
        first = (s * max(1, n_outputs // max(n_sessions, 1))) % n_outputs
        outs = [(first + j) % n_outputs for j in range(width)]
        n = int(n_samples * rng.uniform(0.6, 1.4))
        X = rng.standard_normal((n, n_features)).astype(np.float32)
        eta = np.einsum("np,pkc->nkc", X, coef[:, outs]) + intercept[outs]
        y = labels[np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)]
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={
                "feature": [f"f{i:02d}" for i in range(n_features)],
                "output": [ids[j] for j in outs],
            },
        )
        sessions[f"session{s}"] = ds.chunk({"sample": chunk_rows}) if chunk_rows else ds
    return sessions, coef, intercept, ids, labels
