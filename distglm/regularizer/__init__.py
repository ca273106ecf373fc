"""Penalties on GLM coefficients and their proximal operators (nemos 0.2.8's definitions).

``distglm.regularizer.{UnRegularized, Ridge, Lasso, ElasticNet, GroupLasso}``, or their names.
"""

from __future__ import annotations

from types import MappingProxyType

from .base import Regularizer
from .elementwise import ElasticNet, Lasso, Ridge, UnRegularized
from .group import GroupLasso

__all__ = [
    "ElasticNet",
    "GroupLasso",
    "Lasso",
    "Regularizer",
    "Ridge",
    "UnRegularized",
    "resolve_regularizer",
]

# ---------------------------------------------------------------------------- resolution
_BY_NAME: MappingProxyType[str, type[Regularizer]] = MappingProxyType(
    {
        "UnRegularized": UnRegularized,
        "Ridge": Ridge,
        "Lasso": Lasso,
        "ElasticNet": ElasticNet,
        "GroupLasso": GroupLasso,
    }
)


def _is_nemos_regularizer(reg) -> bool:
    cls = type(reg)
    return cls.__module__.split(".")[0] == "nemos" and cls.__name__ in _BY_NAME


def resolve_regularizer(reg: Regularizer | str | None) -> Regularizer:
    """Return a :class:`Regularizer` for an instance, a class name, or ``None``.

    Parameters
    ----------
    reg :
        A :class:`Regularizer` (returned as is), one of ``"UnRegularized"``, ``"Ridge"``,
        ``"Lasso"``, ``"ElasticNet"``, ``"GroupLasso"``, nemos' regularizer object of one of
        those names (translated, with its parameters, e.g. GroupLasso's mask), or ``None``
        (no penalty).

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For any other type.
    """
    if reg is None:
        return UnRegularized()
    if isinstance(reg, Regularizer):
        return reg
    if _is_nemos_regularizer(reg):
        # nemos' own regularizer objects, translated by class name and parameters (nemos is
        # not imported: the object came from the caller)
        params = dict(reg.get_params()) if callable(getattr(reg, "get_params", None)) else {}
        return _BY_NAME[type(reg).__name__](**params)
    if isinstance(reg, str):
        if reg not in _BY_NAME:
            raise ValueError(f"Unknown regularizer {reg!r}; expected one of {list(_BY_NAME)}.")
        return _BY_NAME[reg]()
    raise TypeError(
        f"Regularizer must be a Regularizer instance, one of {list(_BY_NAME)} or None; got {reg!r}."
    )
