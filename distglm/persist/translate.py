"""nemos <-> distglm by name: estimators, regularizers, solvers and their fitted parameters.

nemos' regularizer objects, link wrapper and solver names (``"LBFGS[optax+optimistix]"``) are
not distglm's; a model crosses over as values: class and regularizer names, the strength, the
solver's name and keyword arguments, the feature mask, the classes and the fitted arrays.
:func:`estimator_from_nemos_values` builds a distglm estimator from such values (read from a
nemos file or from a live nemos model, :func:`nemos_values`); :func:`to_nemos` builds the nemos
estimator from a distglm one (nemos is imported there only).

What does not cross: distglm's ``"Newton"`` and ``"auto"`` solvers have no nemos counterpart
(the nemos model gets nemos' default solver), solver options other than ``tol`` and
``maxiter`` are dropped towards nemos, nemos solvers distglm lacks (BFGS, SVRG, ...) become
distglm's default solver; each of these warns. Solver states and histories stay behind.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..exceptions import FileFormatError
from ..regularizer import _BY_NAME as REGULARIZERS
from ..solve import SOLVERS, check_solver_kwargs

__all__ = ["estimator_from_nemos_values", "nemos_values", "to_nemos"]

_CLASSES = ("ClassifierGLM", "ClassifierPopulationGLM")
#: solver options both libraries read the same way
_SHARED_KWARGS = ("tol", "maxiter")


def _base(name: Any) -> str:
    return str(name).rsplit(".", 1)[-1]


def _solver(name: Any, kwargs: Any, default: str, source: str) -> tuple[str | None, dict]:
    plain = None if name is None else re.sub(r"\[.*\]$", "", str(name))
    if plain is not None and plain not in SOLVERS:
        warnings.warn(
            f"{source}: nemos' solver {name!r} has no distglm counterpart; the distglm model "
            f"gets its default solver ({default}), which matters only when it is refitted.",
            UserWarning,
            stacklevel=4,
        )
        plain = None
    kept, dropped = {}, []
    for key, value in dict(kwargs or {}).items():
        try:
            check_solver_kwargs(plain or default, {key: value})
            kept[key] = value
        except ValueError:
            dropped.append(key)
    if dropped:
        warnings.warn(
            f"{source}: solver_kwargs {sorted(dropped)} are not options of distglm's "
            f"{plain or default} solver and were dropped.",
            UserWarning,
            stacklevel=4,
        )
    return plain, kept


def _unwrap(tree: Any) -> Any:
    """nemos wraps some parameter trees (a GroupLasso mask after a fit) in ``GLMParams``."""
    coef = getattr(tree, "coef", None)
    if coef is not None and hasattr(tree, "intercept"):
        tree = coef
    if isinstance(tree, dict) or type(tree).__name__ == "FeaturePytree":
        return {str(k): np.asarray(tree[k]) for k in tree}
    return None if tree is None else np.asarray(tree)


def _jax_tree(tree: Any) -> Any:
    tree = _unwrap(tree)
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: jnp.asarray(v) for k, v in tree.items()}
    return jnp.asarray(tree)


def estimator_from_nemos_values(values: dict[str, Any], source: str):
    """The distglm estimator for a nemos classifier's values.

    Parameters
    ----------
    values : dict
        ``model_class``, ``n_classes``, ``inverse_link_function`` (a name), ``regularizer``
        (``{"class": name, "params": {...}}``), ``regularizer_strength``, ``solver_name``,
        ``solver_kwargs``, ``feature_mask``, ``_classes_``, ``coef_``, ``intercept_``,
        ``dof_resid_``, ``scale_`` (missing ones are None).
    source : str
        Named in errors and warnings (the file, or "nemos model").

    Raises
    ------
    FileFormatError
        If the values are not a nemos classifier's, or name a link or regularizer distglm has
        not got.
    """
    from .model import model_classes

    cls_name = _base(values.get("model_class"))
    if cls_name not in _CLASSES:
        raise FileFormatError(
            f"{source}: a nemos {values.get('model_class')!r}, not a classifier; distglm "
            f"loads {list(_CLASSES)}."
        )
    link = values.get("inverse_link_function")
    if link is not None and _base(link) != "log_softmax":
        raise FileFormatError(f"{source}: the inverse link {link!r} is not log_softmax.")
    reg = values.get("regularizer") or {"class": "UnRegularized", "params": {}}
    reg_name = _base(reg.get("class"))
    if reg_name not in REGULARIZERS:
        raise FileFormatError(
            f"{source}: the regularizer {reg.get('class')!r} is not one of distglm's "
            f"{sorted(REGULARIZERS)}."
        )
    reg_params = dict(reg.get("params") or {})
    if "mask" in reg_params:
        reg_params["mask"] = _unwrap(reg_params["mask"])
    reg_cls = REGULARIZERS[reg_name]
    solver_name, solver_kwargs = _solver(
        values.get("solver_name"), values.get("solver_kwargs"), reg_cls.default_solver, source
    )
    kwargs: dict[str, Any] = {
        "n_classes": int(values["n_classes"]),
        "regularizer": reg_cls(**reg_params),
        "regularizer_strength": values.get("regularizer_strength"),
        "solver_name": solver_name,
        "solver_kwargs": solver_kwargs,
    }
    if cls_name == "ClassifierPopulationGLM":
        kwargs["feature_mask"] = _jax_tree(values.get("feature_mask"))
    if not reg_cls.has_strength:
        kwargs["regularizer_strength"] = None
    try:
        model = model_classes()[cls_name](**kwargs)
        classes = values.get("_classes_", values.get("classes_"))
        if classes is not None:
            model.set_classes(np.asarray(classes))
        if values.get("coef_") is not None:
            model.coef_ = _jax_tree(values["coef_"])
            model.intercept_ = jnp.asarray(values["intercept_"])
            for attr in ("dof_resid_", "scale_"):
                if values.get(attr) is not None:
                    setattr(model, attr, jnp.asarray(values[attr]))
            n_outputs = np.shape(model.intercept_)[0] if model._population else 1
            model.outputs_ = np.arange(n_outputs)
    except (TypeError, ValueError, KeyError) as e:
        raise FileFormatError(f"{source}: cannot build a distglm {cls_name} from it: {e}") from e
    return model


def nemos_values(nm) -> dict[str, Any]:
    """The values :func:`estimator_from_nemos_values` takes, from a live nemos classifier."""
    link = nm.inverse_link_function
    reg = nm.regularizer
    values = {
        "model_class": f"{type(nm).__module__}.{type(nm).__name__}",
        "n_classes": nm.n_classes,
        "inverse_link_function": getattr(link, "__name__", str(link)),
        "regularizer": {"class": type(reg).__name__, "params": reg.get_params(deep=False)},
        "regularizer_strength": nm.regularizer_strength,
        "solver_name": nm.solver_name,
        "solver_kwargs": nm.solver_kwargs,
        "feature_mask": getattr(nm, "feature_mask", None),
        "classes_": nm.classes_,
    }
    if getattr(nm, "coef_", None) is not None and getattr(nm, "intercept_", None) is not None:
        values.update(
            coef_=nm.coef_, intercept_=nm.intercept_, dof_resid_=nm.dof_resid_, scale_=nm.scale_
        )
    return values


def _nemos_solver(model) -> tuple[str | None, dict]:
    name = model.solver_name
    nemos_name: str | None = name
    if name not in ("LBFGS", "GradientDescent", "ProximalGradient"):
        warnings.warn(
            f"nemos has no {name!r} solver: the nemos model gets nemos' default solver for "
            f"{type(model.regularizer).__name__} (it matters only when it is refitted).",
            UserWarning,
            stacklevel=4,
        )
        nemos_name = None
    kwargs = {k: v for k, v in model.solver_kwargs.items() if k in _SHARED_KWARGS}
    dropped = sorted(set(model.solver_kwargs) - set(kwargs))
    if dropped:
        warnings.warn(
            f"solver_kwargs {dropped} are distglm's own options; the nemos model does not get "
            "them.",
            UserWarning,
            stacklevel=4,
        )
    return nemos_name, kwargs


def _nemos_mask(model):
    """The feature mask as nemos takes it (a DataArray mask aligned to the fitted labels)."""
    import xarray as xr

    mask = model.feature_mask
    if not isinstance(mask, xr.DataArray):
        return mask
    from ..inputs import DesignLayout
    from ..mask import mask_block

    if model.coef_ is None:
        raise ValueError(
            "nemos takes no DataArray feature_mask; fit the model first (the mask is then "
            "aligned to its features and outputs) or give the mask as an array."
        )
    layout = DesignLayout.from_coef(model.coef_)
    K = int(np.shape(model.intercept_)[0])
    block = mask_block(mask, layout, K, model.n_classes, (model.features_, model.outputs_))
    return layout.split(jnp.asarray(block))


def to_nemos(model):
    """The nemos 0.2.8 estimator holding ``model``'s parameters (fitted ones included).

    Returns
    -------
    nemos.glm.ClassifierGLM or nemos.glm.ClassifierPopulationGLM
    """
    import nemos

    reg = model.regularizer
    reg_params = reg.get_params()
    nemos_reg = getattr(nemos.regularizer, type(reg).__name__)(**reg_params)
    solver_name, solver_kwargs = _nemos_solver(model)
    kwargs: dict[str, Any] = {
        "n_classes": model.n_classes,
        "regularizer": nemos_reg,
        "regularizer_strength": model.regularizer_strength if reg.has_strength else None,
        "solver_name": solver_name,
        "solver_kwargs": solver_kwargs,
    }
    cls = nemos.glm.ClassifierPopulationGLM if model._population else nemos.glm.ClassifierGLM
    if model._population:
        kwargs["feature_mask"] = _nemos_mask(model)
    nm = cls(**kwargs)
    if model.classes_ is not None:
        nm.set_classes(np.asarray(model.classes_))
    if model.coef_ is not None and model.intercept_ is not None:
        coef = model.coef_
        nm.coef_ = _jax_tree(coef)
        nm.intercept_ = jnp.asarray(model.intercept_)
        if model.dof_resid_ is not None:
            nm.dof_resid_ = jnp.asarray(model.dof_resid_)
        if model.scale_ is not None:
            nm.scale_ = jnp.asarray(model.scale_)
    return nm
