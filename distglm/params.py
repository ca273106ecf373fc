"""The estimators' constructor parameters: their checks and scikit-learn's parameter protocol.

:class:`ClassifierParams` holds ``n_classes`` (through the shared label encoder),
``inverse_link_function``, ``regularizer``, ``regularizer_strength``, ``solver_name`` and
``solver_kwargs``, validates each when it is set, and implements ``get_params`` /
``set_params`` / cloning and the repr. The estimators add fitting and prediction on top.
"""

from __future__ import annotations

import copy
import warnings
from numbers import Real
from typing import ClassVar

import jax
import numpy as np

from .encoding import LabelEncoder
from .observation import CategoricalObservations
from .regularizer import Regularizer, resolve_regularizer
from .solve import check_solver_kwargs

__all__ = ["ClassifierParams"]

#: the inverse links, by the name an estimator stores
_LINKS = {"log_softmax": jax.nn.log_softmax}


def _is_log_softmax(fn) -> bool:
    """jax's log-softmax (jitted or not, as nemos stores it) or its name."""
    if isinstance(fn, str):
        return fn == "log_softmax"
    if fn is jax.nn.log_softmax:
        return True
    module = getattr(fn, "__module__", None) or ""
    return getattr(fn, "__name__", None) == "log_softmax" and module.split(".")[0] in (
        "jax",
        "nemos",
    )


class ClassifierParams:
    """Constructor parameters of a categorical GLM (see :class:`distglm.ClassifierGLM`)."""

    #: whether the model has an output axis (the population model) and a feature mask
    _population: ClassVar[bool] = False
    #: the estimator's fitted attributes, None until it is fitted
    _fitted_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        n_classes=2,
        inverse_link_function=None,
        regularizer=None,
        regularizer_strength=None,
        solver_name=None,
        solver_kwargs=None,
    ):
        self.n_classes = n_classes
        self.inverse_link_function = inverse_link_function
        self._regularizer = resolve_regularizer("Ridge" if regularizer is None else regularizer)
        self._solver_name = None
        self.regularizer_strength = regularizer_strength
        self.solver_name = solver_name
        self.solver_kwargs = solver_kwargs
        for name in self._fitted_attributes:
            setattr(self, name, None)

    # ------------------------------------------------------------------ parameters
    @property
    def n_classes(self) -> int:
        """Number of classes (an integer >= 2); setting it forgets the classes."""
        return self._encoder.n_classes

    @n_classes.setter
    def n_classes(self, value):
        if isinstance(value, (np.ndarray, jax.Array)) and value.size == 1:
            value = value.item()
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not np.isfinite(value)
            or value < 2
            or int(value) != value
        ):
            raise ValueError(
                f"The number of classes must be an integer >= 2 (n_classes); got {value!r}."
            )
        self._encoder = LabelEncoder(int(value))

    @property
    def classes_(self):
        """Class labels, sorted, or None before :meth:`set_classes` / :meth:`fit`."""
        return self._encoder.classes_

    @classes_.setter
    def classes_(self, value):
        if value is None:
            self._encoder.reset()
        else:
            self._encoder.set_classes(value)

    @property
    def inverse_link_function(self):
        """The inverse link: log-softmax (the only one a categorical GLM takes here).

        Stored by name (``"log_softmax"``), so estimators pickle; reading it gives
        ``jax.nn.log_softmax``.
        """
        return _LINKS[self._inverse_link_function]

    @inverse_link_function.setter
    def inverse_link_function(self, fn):
        if fn is not None and not _is_log_softmax(fn):
            raise ValueError(
                "The categorical GLM's inverse link must be log-softmax: jax.nn.log_softmax, "
                f"nemos' log_softmax, the name 'log_softmax', or None for it; got {fn!r}."
            )
        self._inverse_link_function = "log_softmax"

    @property
    def observation_model(self) -> CategoricalObservations:
        """The categorical observation model (nemos' ``observation_model``: log-likelihood,
        deviance, pseudo-R2, samples and scale, on one-hot ``y`` and log-probabilities)."""
        return CategoricalObservations()

    @property
    def regularizer(self) -> Regularizer:
        """The penalty: an instance of one of :mod:`distglm.regularizer`'s classes."""
        return self._regularizer

    @regularizer.setter
    def regularizer(self, value):
        reg = resolve_regularizer(value)
        if self._solver_name is not None:
            reg.check_solver(self._solver_name)
        self._regularizer = reg
        self._regularizer_strength = reg.validate_strength(None)

    @property
    def regularizer_strength(self):
        """Strength of the penalty (validated by the regularizer)."""
        return self._regularizer_strength

    @regularizer_strength.setter
    def regularizer_strength(self, value):
        if value is not None and not self._regularizer.has_strength:
            name = type(self._regularizer).__name__
            warnings.warn(
                f"{name} ignores regularizer_strength={value!r}.", UserWarning, stacklevel=2
            )
        self._regularizer_strength = self._regularizer.validate_strength(value)

    @property
    def solver_name(self) -> str:
        """Solver used by :meth:`fit`; defaults to the regularizer's default solver."""
        return self._solver_name or self._regularizer.default_solver

    @solver_name.setter
    def solver_name(self, name):
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"solver_name must be a string or None; got {name!r}.")
            check_solver_kwargs(name)
            self._regularizer.check_solver(name)
        self._solver_name = name

    @property
    def solver_kwargs(self) -> dict:
        """Keyword arguments of the solver (``tol``, ``maxiter``, ...)."""
        return self._solver_kwargs

    @solver_kwargs.setter
    def solver_kwargs(self, kwargs):
        kwargs = {} if kwargs is None else dict(kwargs)
        check_solver_kwargs(self.solver_name, kwargs)
        self._solver_kwargs = kwargs

    def _param_names(self):
        names = ["n_classes", "inverse_link_function", "regularizer", "regularizer_strength"]
        names += ["solver_name", "solver_kwargs"]
        return [*names, "feature_mask"] if self._population else names

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters by name (scikit-learn's protocol)."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and name == "regularizer":
                out.update({f"regularizer__{k}": v for k, v in value.get_params().items()})
        return out

    def set_params(self, **params):
        """Set constructor parameters by name; returns ``self``."""
        valid = set(self._param_names())
        if "regularizer" in params:
            self.regularizer = params.pop("regularizer")
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; valid parameters "
                    f"are {sorted(valid)}."
                )
            setattr(self, name, value)
        return self

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        params["solver_name"] = self._solver_name  # None follows the penalty's default
        link = params.pop("inverse_link_function")  # a jitted function: deepcopy breaks `is`
        return type(self)(inverse_link_function=link, **copy.deepcopy(params))

    def __repr__(self):
        parts = [f"n_classes={self.n_classes}", f"regularizer={self.regularizer!r}"]
        if self._regularizer_strength is not None:
            parts.append(f"regularizer_strength={self._regularizer_strength!r}")
        parts.append(f"solver_name={self.solver_name!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
