"""Plots of a fitted model (matplotlib, the ``plot`` extra; imported only when a plot is drawn).

- :func:`convergence`: the objective gap per pass, on a log scale;
- :func:`coefficients`: one output's coefficients as a feature x class heatmap;
- :func:`scores`: one bar per output or per session (e.g. McFadden R2 from ``summary``).

Each returns the matplotlib ``Axes`` it drew on (a new figure's, unless ``ax`` is given).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .labelled import Summary

__all__ = ["coefficients", "convergence", "save_demo_plots", "scores"]


def _axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def convergence(model, ax=None):
    """The estimated relative objective gap against cumulative passes over the data.

    Parameters
    ----------
    model : a fitted ClassifierGLM or ClassifierPopulationGLM
    ax : matplotlib Axes, optional
    """
    history = model.fit_history_
    if not history:
        raise ValueError("convergence needs a fitted model with a fit_history_; got none.")
    passes = np.array([h["passes"] for h in history], float)
    gap = np.array([h["gap"] for h in history], float)
    ax = _axes(ax, (5, 3.5))
    ax.semilogy(passes, np.maximum(gap, np.finfo(float).tiny), "o-")
    ax.set_xlabel("passes over the data")
    ax.set_ylabel("relative objective gap")
    ax.set_title(f"{type(model).__name__}: {model.solver_}, {model.n_passes_} passes")
    ax.grid(True, which="both", alpha=0.3)
    return ax


def coefficients(model, output=0, ax=None):
    """One output's coefficients as a heatmap over features (rows) and classes (columns).

    Parameters
    ----------
    model : a fitted model
    output : label in ``model.outputs_`` or int position, default the first output
    ax : matplotlib Axes, optional
    """
    ds = model.to_xarray()
    outputs = list(ds["output"].values)
    j = outputs.index(output) if output in outputs else int(output)
    values = ds["coef"].values[:, j, :]
    ax = _axes(ax, (4, max(2.5, 0.25 * values.shape[0] + 1)))
    bound = float(np.abs(values).max()) or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in ds["class"].values])
    ax.set_yticks(range(values.shape[0]), [str(f) for f in ds["feature"].values])
    ax.set_xlabel("class")
    ax.set_ylabel("feature")
    ax.set_title(f"coefficients of output {outputs[j]}")
    ax.figure.colorbar(image, ax=ax)
    return ax


def scores(values, labels=None, ax=None, what="McFadden R2"):
    """One bar per output or session.

    Parameters
    ----------
    values : mapping label -> score, a ``Summary`` (its per-output McFadden R2), or an array
    labels : sequence, optional
        Bar labels for an array of values.
    ax : matplotlib Axes, optional
    what : str
        The y-axis label.
    """
    if isinstance(values, Summary):
        pairs = [(o.output, o.mcfadden_r2) for o in values.outputs]
        if any(v is None for _, v in pairs):
            raise ValueError("scores: this summary has no R2; call summary(X, y) with data.")
        labels, heights = [p[0] for p in pairs], np.array([p[1] for p in pairs], float)
    elif isinstance(values, Mapping):
        labels, heights = list(values), np.array(list(values.values()), float)
    else:
        heights = np.asarray(values, float).ravel()
        labels = list(range(heights.size)) if labels is None else list(labels)
    ax = _axes(ax, (max(4, 0.4 * len(labels) + 1), 3))
    ax.bar(range(len(labels)), heights, color="tab:blue")
    ax.set_xticks(range(len(labels)), [str(x) for x in labels], rotation=45, ha="right")
    ax.set_ylabel(what)
    ax.axhline(0, color="black", lw=0.8)
    return ax


def save_demo_plots(model, session_scores: Mapping, folder) -> list[str]:
    """Write the three plots of a fitted model to PNG files in ``folder``; returns their paths."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, draw in (
        ("convergence.png", lambda: convergence(model)),
        ("coefficients.png", lambda: coefficients(model, 0)),
        ("scores.png", lambda: scores(session_scores, what="McFadden R2 per session")),
    ):
        ax = draw()
        path = os.path.join(folder, name)
        ax.figure.savefig(path, dpi=90)
        plt.close(ax.figure)
        paths.append(path)
    return paths
