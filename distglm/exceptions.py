"""Exception types raised by distglm."""

from __future__ import annotations

__all__ = ["NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs fitted parameters is called on an unfitted model.

    It derives from both :class:`ValueError` and :class:`AttributeError` so that code
    written against either convention (scikit-learn uses both) catches it.
    """
