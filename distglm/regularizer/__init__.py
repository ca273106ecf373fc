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


def resolve_regularizer(reg: Regularizer | str | None) -> Regularizer:
    """Return a :class:`Regularizer` for an instance, a class name, or ``None``.

    Parameters
    ----------
    reg :
        A :class:`Regularizer` (returned as is), one of ``"UnRegularized"``, ``"Ridge"``,
        ``"Lasso"``, ``"ElasticNet"``, ``"GroupLasso"``, or ``None`` (no penalty).

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
    if isinstance(reg, str):
        if reg not in _BY_NAME:
            raise ValueError(f"Unknown regularizer {reg!r}; expected one of {list(_BY_NAME)}.")
        return _BY_NAME[reg]()
    raise TypeError(
        f"Regularizer must be a Regularizer instance, one of {list(_BY_NAME)} or None; got {reg!r}."
    )
