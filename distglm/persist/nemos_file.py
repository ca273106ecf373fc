"""Reading a classifier that nemos 0.2.8's ``save_params`` wrote (an ``.npz``), without nemos.

nemos flattens its parameters into keys such as ``dict::strkey:regularizer::item::strkey:class``
(a container type and a typed key per level), stores ``None`` as NaN and leaves as numpy arrays.
This module reads that layout with ``allow_pickle=False`` and builds the distglm estimator
from it by name (:mod:`~distglm.persist.translate`).

What carries over: the class, ``n_classes``, the regularizer and its strength (scalars, arrays,
ElasticNet pairs), the solver's name and those of its keyword arguments distglm's solver takes,
the feature mask (arrays or dicts), ``classes_`` (strings, ints, floats, bools), ``coef_`` and
``intercept_`` (arrays or dicts), ``dof_resid_`` and ``scale_``. What does not: nemos saves no
solver state and no fit history (``solver_state_``, ``fit_history_``, ``n_passes_`` and
``solver_`` stay None); ``aux_`` and the label index are not used; a GroupLasso mask is stored
by nemos as a pickled object, which distglm does not read (it is refused).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import FileFormatError
from .translate import estimator_from_nemos_values

__all__ = ["is_nemos_file", "load_nemos_file"]

_MODEL_KEY = "item::strkey:model_class"
_PICKLED = object()  # marks a member nemos stored as a pickled object


def is_nemos_file(path: Path) -> bool:
    """Whether ``path`` is an ``.npz`` nemos' ``save_params`` wrote."""
    try:
        with zipfile.ZipFile(path) as z:
            return f"{_MODEL_KEY}.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _key(text: str, path: Path) -> Any:
    for prefix, cast in (("strkey:", str), ("intkey:", int), ("floatkey:", float)):
        if text.startswith(prefix):
            return cast(text[len(prefix) :])
    if text.isdigit():
        return int(text)
    raise FileFormatError(f"{path}: a nemos key part {text!r} that distglm does not read.")


def _leaf(value: np.ndarray) -> Any:
    if value.ndim:
        return value
    if value.dtype.kind == "U":
        return str(value)
    if value.dtype.kind == "f" and np.isnan(value):
        return None
    return value.item()


def _tree(path: Path) -> dict:
    """The nested values of a nemos file (label index and metadata left out)."""
    root: dict = {}
    kinds: dict[tuple, str] = {}
    with np.load(path, allow_pickle=False) as npz:
        for name in npz.files:
            parts = name.split("::")
            pairs = list(zip(parts[::2], parts[1::2], strict=True))
            if pairs[0][1] in ("strkey:_class_to_index_", "strkey:save_metadata"):
                continue
            try:
                value: Any = _leaf(npz[name])
            except ValueError:
                value = _PICKLED
            node = root
            trail: tuple[Any, ...] = ()
            for kind, text in pairs[:-1]:
                key = _key(text, path)
                trail = (*trail, key)
                kinds[trail] = kind
                node = node.setdefault(key, {})
            node[_key(pairs[-1][1], path)] = value
    return _rebuild(root, kinds, ())


def _rebuild(node: Any, kinds: dict, trail: tuple) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _rebuild(v, kinds, (*trail, k)) for k, v in node.items()}
    if kinds.get(trail) in ("tuple", "list"):
        items = [out[i] for i in sorted(out)]
        return tuple(items) if kinds[trail] == "tuple" else items
    return out


def load_nemos_file(path: Path):
    """A distglm estimator from a nemos classifier file.

    Raises
    ------
    FileFormatError
        If the file is not a nemos classifier, or holds what distglm cannot read (a pickled
        GroupLasso mask, an unknown regularizer or link).
    """
    try:
        tree = _tree(path)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise FileFormatError(f"{path}: a damaged or truncated nemos file: {e}") from None

    def check(value, where):
        if value is _PICKLED:
            raise FileFormatError(
                f"{path}: nemos stored {where} as a pickled Python object; distglm never "
                "unpickles (it could run code from the file), so this file cannot be loaded. "
                "Rebuild the model with distglm and set it with set_params."
            )
        if isinstance(value, dict):
            for k, v in value.items():
                check(v, f"{where}[{k!r}]")

    for key, value in tree.items():
        check(value, key)
    return estimator_from_nemos_values(tree, str(path))
