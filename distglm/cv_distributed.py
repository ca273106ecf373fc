"""The cross-validated search over a Dask cluster: every fold in the same passes over the chunks
cached on the workers.

:func:`distributed_search` opens the data once (the statistics pass, which caches the chunks),
or takes an open :class:`~distglm.DataSession`, and runs the in-memory search's stacked Newton
path (:func:`~distglm.cv_search.newton_path`) on :class:`~distglm.distribute.folds_term.FoldedData`:
each worker derives its chunks' fold weights from their session and row range (a
:class:`~distglm.folds.FoldRule`: ``cv="session"`` leaves one session out, an int ``k`` cuts
``k`` contiguous blocks of time within every session), so one pass advances every
(fold, output) column and returns the held-out sums too. The refit runs on the same session,
warm-started from the full-data path.

Chunks past the workers' cache budget are streamed (re-read every pass), their fold weights
derived the same way as they are read. Supported: per-output (separable) penalties, and with
``cv="session"`` every session recording every output.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from .cv_search import newton_path, search_result
from .distribute import DataSession, open_data
from .distribute.folds_term import FoldedData, fold_held_counts
from .fit import initial_theta
from .folds import FoldRule, fold_rule
from .path import DEFAULT_N_STRENGTHS, explicit_strengths, strengths_from_gradient
from .spec import kernel_dtype

__all__ = ["distributed_search", "session_rule"]

logger = logging.getLogger(__name__)


def session_rule(session: DataSession, cv) -> FoldRule:
    """The fold rule of ``cv`` over ``session``'s sessions.

    With ``cv="session"``, an output recorded in one session only is held out by contiguous
    time blocks inside it (logged, and listed in ``cv_results_.attrs["fallback_outputs"]``);
    one missing from some sessions is held out only in the folds of those that recorded it
    (its score is NaN in the others).

    Raises
    ------
    ValueError
        For a ``cv`` that is not "session" or an int, or a splitter.
    """
    plan = session.plan
    lengths = np.zeros(len(plan.session_outputs), np.int64)
    for spec in plan.chunks:
        lengths[spec.session_index] = max(lengths[spec.session_index], spec.stop)
    if hasattr(cv, "split") and not isinstance(cv, str):
        raise ValueError(
            f"A distributed search takes cv='session' or an int k; got the splitter {cv!r} "
            "(splitters need the rows in memory)."
        )
    rule = fold_rule(lengths, cv, plan.n_outputs, plan.session_outputs)
    if rule.fallback_outputs:
        names = [str(plan.outputs[j]) for j in rule.fallback_outputs]
        logger.warning(
            'cv="session": outputs %s were recorded in one session only; each is held out by '
            "%d contiguous time blocks inside its session instead",
            names,
            rule.n_folds,
        )
    return rule


def _strengths(search, model, session, term) -> tuple[np.ndarray, int]:
    """The grid and the passes it took (one gradient pass over ``term`` for a default grid)."""
    values = explicit_strengths(search.strengths)
    if values is not None:
        return values, 0
    stats = session.stats
    theta0 = initial_theta(session.plan.n_features, stats.class_counts, stats.n_samples)
    _, grad = term.value_and_grad(theta0)
    n = DEFAULT_N_STRENGTHS if search.strengths is None else int(search.strengths)
    return strengths_from_gradient(model, np.asarray(grad)[:-1], n), 1


def distributed_search(search, X, y, client, cache_bytes):
    """Fit ``search`` (a :class:`~distglm.ClassifierPopulationGLMCV` or
    :class:`~distglm.ClassifierGLMCV`) on distributed data; returns ``search``.

    Raises
    ------
    NotImplementedError
        For a solver other than the default/"auto"/"Newton", a penalty that is not a sum over
        outputs.
    """
    if search.solver_name not in (None, "auto", "Newton"):
        raise NotImplementedError(
            f"A distributed search runs per-output Newton; got solver_name="
            f"{search.solver_name!r} (use None, 'auto' or 'Newton')."
        )
    base = search._base()
    if isinstance(X, DataSession):
        if y is not None or cache_bytes is not None:
            raise ValueError("An open DataSession carries its labels and cache: pass X alone.")
        opened = contextlib.nullcontext(X)
    else:
        opened = open_data(
            X,
            y,
            n_classes=search.n_classes,
            client=client,
            population=base._population,
            dtype=str(kernel_dtype()),
            cache_bytes=cache_bytes,
        )
    with opened as session:
        plan, stats = session.plan, session.stats
        rule = session_rule(session, search.cv)
        model = search._base_population()
        model.set_classes(session.classes)
        F, K = rule.n_folds, plan.n_outputs
        shape = (plan.n_features + 1, (F + 1) * K, model.n_classes)
        if not model._spec(plan.layout, shape[1]).penalty.is_separable(shape):
            raise NotImplementedError(
                "A distributed search needs a penalty that is a sum over outputs (per-output "
                "Newton); this GroupLasso's groups span outputs."
            )
        # the session's first term counts its statistics pass (when it made one); the
        # search's passes start with it, and the refit's term counts none
        first = session.term()
        strengths, grid_passes = _strengths(search, model, session, first)
        data = FoldedData(session, rule, fold_held_counts(session, rule))
        counts = np.tile(stats.class_counts, (F + 1, 1))
        theta0 = initial_theta(plan.n_features, counts, counts.sum(axis=1))
        held, passes, thetas = newton_path(model, data, plan.layout, theta0, strengths)
        data.mark_last()
        passes[0] += first.stat_passes + grid_passes
        found = search_result(
            model, strengths, data.n_held, (F, K), held, passes, thetas, outputs=plan.outputs
        )
        search._finish(found, strengths, base, True, lambda m, init: m.fit(session, None, init))
        search.cv_results_.attrs["fallback_outputs"] = [
            str(plan.outputs[j]) for j in rule.fallback_outputs
        ]
        return search
