"""Saved models: an estimator as JSON metadata plus arrays, and back (no pickle anywhere).

:func:`save_model` writes (through :mod:`~distglm.persist.bundle`, atomically) the format
version, the distglm version, the class, every constructor parameter (the regularizer by name
with its own parameters, the strength, the solver's name and keyword arguments, the feature
mask), the classes and every fitted attribute (``coef_`` and ``intercept_`` in their layout,
``outputs_``, ``features_``, ``fit_history_``, ``n_passes_``, ``dof_resid_``, ``scale_``,
``solver_``, the typed ``solver_state_``, ``fit_profile_``, ``fit_time_``). :func:`load_model`
reads it back, or a file nemos 0.2.8's ``save_params`` wrote for a classifier
(:mod:`~distglm.persist.nemos_file`). Loading builds only known classes (the two estimators, the
five regularizers, the solver states) from the file's values; it imports and runs nothing the
file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import FileFormatError
from ..regularizer import _BY_NAME as REGULARIZERS
from ..solve import SolverState, state_from_record, state_to_record
from .bundle import read_bundle, read_header, write_bundle
from .codec import decode, encode

__all__ = ["MODEL_KIND", "load_model", "model_classes", "params_record", "save_model"]

MODEL_KIND = "distglm-model"


def model_classes() -> dict[str, type]:
    """The estimator classes a file may name."""
    from ..estimator import ClassifierGLM, ClassifierPopulationGLM

    return {"ClassifierGLM": ClassifierGLM, "ClassifierPopulationGLM": ClassifierPopulationGLM}


def _version() -> str:
    from .. import __version__

    return __version__


# ---------------------------------------------------------------------------- parameters
def params_record(model, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every constructor parameter of ``model`` as JSON nodes (arrays added to ``arrays``).

    Raises
    ------
    TypeError
        If the regularizer is not one of distglm's (a custom class cannot be saved by name).
    """
    params = model.get_params(deep=False)
    reg = params.pop("regularizer")
    name = type(reg).__name__
    if REGULARIZERS.get(name) is not type(reg):
        raise TypeError(
            f"The regularizer {type(reg).__module__}.{type(reg).__qualname__} is not one of "
            f"distglm's ({sorted(REGULARIZERS)}); a saved model names its regularizer, so a "
            "custom one cannot be saved."
        )
    params.pop("inverse_link_function")
    out: dict[str, Any] = {
        "inverse_link_function": "log_softmax",
        "regularizer": {
            "name": name,
            "params": encode(reg.get_params(), arrays, "params.regularizer"),
        },
    }
    for key, value in params.items():
        out[key] = encode(value, arrays, f"params.{key}")
    return out


def _constructor(record: dict, arrays: dict, cls: type, path: Path) -> Any:
    record = dict(record)
    link = record.pop("inverse_link_function", None)
    if link != "log_softmax":
        raise FileFormatError(f"{path}: unknown inverse link {link!r} (distglm has log_softmax).")
    reg = record.pop("regularizer", None)
    if not isinstance(reg, dict) or reg.get("name") not in REGULARIZERS:
        raise FileFormatError(
            f"{path}: unknown regularizer {reg!r}; expected one of {sorted(REGULARIZERS)}."
        )
    kwargs = {key: decode(node, arrays, f"params.{key}") for key, node in record.items()}
    try:
        regularizer = REGULARIZERS[reg["name"]](**decode(reg["params"], arrays, "regularizer"))
        return cls(regularizer=regularizer, **kwargs)
    except (TypeError, ValueError) as e:
        raise FileFormatError(
            f"{path}: its parameters are not valid for {cls.__name__}: {e}"
        ) from e


# ---------------------------------------------------------------------------- fitted state
def _state_record(state: SolverState, arrays: dict) -> dict:
    meta, state_arrays = state_to_record(state)
    return {
        "meta": encode(meta, arrays, "solver_state_"),
        "arrays": encode(state_arrays, arrays, "solver_state_"),
    }


def _state_from(node: dict, arrays: dict, path: Path) -> SolverState:
    try:
        meta = decode(node["meta"], arrays, "solver_state_")
        return state_from_record(meta, decode(node["arrays"], arrays, "solver_state_"))
    except (KeyError, TypeError, ValueError) as e:
        raise FileFormatError(f"{path}: the solver state cannot be rebuilt: {e}") from None


def model_record(model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and arrays :func:`save_model` writes for ``model``."""
    arrays: dict[str, np.ndarray] = {}
    fitted: dict[str, Any] = {}
    for name in model._fitted_attributes:
        value = getattr(model, name)
        if name == "solver_state_" and value is not None:
            fitted[name] = {"state": _state_record(value, arrays)}
        else:
            fitted[name] = encode(value, arrays, name)
    meta = {
        "distglm_version": _version(),
        "class": type(model).__name__,
        "params": params_record(model, arrays),
        "classes": encode(model.classes_, arrays, "classes_"),
        "fitted": fitted,
    }
    return meta, arrays


def save_model(model, path, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path``: an ``.npz`` file, or else a directory (a Zarr store).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False (or it is not a distglm model).
    TypeError
        If something the model holds cannot be saved without pickle (the message says what):
        a custom regularizer, class labels of mixed types or tuples.
    """
    meta, arrays = model_record(model)
    return write_bundle(path, meta, arrays, kind=MODEL_KIND, overwrite=overwrite)


def model_from_record(meta: dict, arrays: dict, path: Path):
    """The estimator a model record describes, checked."""
    classes = model_classes()
    name = meta.get("class")
    if name not in classes:
        raise FileFormatError(f"{path}: unknown model class {name!r}; expected {sorted(classes)}.")
    model = _constructor(meta.get("params") or {}, arrays, classes[name], path)
    labels = decode(meta.get("classes"), arrays, "classes_")
    try:
        if labels is not None:
            model.set_classes(labels)
    except (TypeError, ValueError) as e:
        raise FileFormatError(f"{path}: its classes do not fit the model: {e}") from None
    fitted = meta.get("fitted") or {}
    unknown = sorted(set(fitted) - set(model._fitted_attributes))
    if unknown:
        raise FileFormatError(f"{path}: unknown fitted attributes {unknown}.")
    for attr, node in fitted.items():
        if isinstance(node, dict) and set(node) == {"state"}:
            value = _state_from(node["state"], arrays, path)
        else:
            value = decode(node, arrays, attr)
        setattr(model, attr, value)
    _check_fitted(model, path)
    return model


def _check_fitted(model, path: Path) -> None:
    if model.coef_ is None and model.intercept_ is None:
        return
    from ..predict import Fitted

    try:
        fitted = Fitted.from_user(
            model.coef_, model.intercept_, model._encoder, model.outputs_, model._population
        )
        if fitted.block.shape[2] != model.n_classes or fitted.intercept.shape != (
            fitted.block.shape[1],
            model.n_classes,
        ):
            raise ValueError(
                f"coef_ {tuple(fitted.block.shape)} and intercept_ "
                f"{tuple(fitted.intercept.shape)} do not fit n_classes={model.n_classes}"
            )
    except (TypeError, ValueError, IndexError) as e:
        raise FileFormatError(f"{path}: its fitted parameters are inconsistent: {e}") from None


def load_model(path):
    """Load a model :meth:`save_params` wrote, or a classifier nemos 0.2.8 saved.

    Parameters
    ----------
    path : str or path
        A distglm ``.npz`` file or Zarr directory, or a nemos ``.npz`` file.

    Returns
    -------
    ClassifierGLM or ClassifierPopulationGLM

    Raises
    ------
    FileFormatError
        If the file is missing, truncated, damaged, modified after it was written, of a newer
        format, or holds something distglm cannot rebuild (the message says what).
    """
    from .nemos_file import is_nemos_file, load_nemos_file

    path = Path(path)
    if path.is_file() and is_nemos_file(path):
        return load_nemos_file(path)
    header = read_header(path)
    if header.get("format") != MODEL_KIND:
        raise FileFormatError(f"{path} is a {header.get('format')!r} file, not a saved model.")
    meta, arrays = read_bundle(path, MODEL_KIND)
    return model_from_record(meta, arrays, path)
