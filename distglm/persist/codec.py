"""Plain values to JSON plus named arrays, and back: the one encoding every saved file uses.

:func:`encode` turns a value (numbers, strings, ``None``, lists, tuples, dicts, numpy and JAX
arrays, numpy scalars, ``xarray.DataArray``) into a JSON-able node; the arrays it meets are put
in an ``arrays`` dict under a name derived from where they sit, and the node refers to them by
that name. :func:`decode` rebuilds the value from the node and the arrays. Nodes are tagged
dicts (``{"tuple": [...]}``, ``{"array": name}``, ...) so no value's type is guessed on the way
back, and nothing in a node is ever executed or imported: decoding only builds the types above.

Refused (:class:`TypeError` naming where the value sits): object and structured arrays (they
would need pickle), and any other type of value.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..exceptions import FileFormatError

__all__ = ["ARRAY_KINDS", "decode", "encode", "plain_array"]

#: numpy dtype kinds a saved array may have: bool, ints, floats, complex, str, bytes
ARRAY_KINDS = "biufcUS"

_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_TAGS = {"tuple", "dict", "items", "array", "float", "dataarray"}


def plain_array(value: Any, where: str) -> np.ndarray:
    """``value`` as a numpy array of a kind a file can hold without pickle.

    An object array whose items are all of one plain kind (all strings, say) is converted to
    that kind; anything else an object array holds (tuples, mixed types) is refused.

    Raises
    ------
    TypeError
        If the array is of object (mixed) or structured dtype.
    """
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        items = arr.ravel().tolist()
        kinds = {type(v) for v in items}
        converted = np.asarray(items) if items and len(kinds) == 1 else None
        ok = (
            converted is not None
            and converted.dtype.kind in ARRAY_KINDS
            and converted.shape == (len(items),)
        )
        if converted is None or not ok:
            shown = sorted({t.__name__ for t in kinds})
            raise TypeError(
                f"{where}: an object array of {shown} cannot be saved without pickle; only "
                "arrays of numbers, booleans or strings (one type) can."
            )
        arr = converted.reshape(arr.shape)
    if arr.dtype.kind not in ARRAY_KINDS or arr.dtype.fields is not None:
        raise TypeError(
            f"{where}: arrays of dtype {arr.dtype} cannot be saved; only numbers, booleans or "
            "strings can."
        )
    return arr


def _name(where: str, arrays: dict) -> str:
    base = _NAME.sub("_", where).lstrip("_.") or "value"
    name, i = base, 1
    while name in arrays:
        i += 1
        name = f"{base}.{i}"
    return name


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """A JSON-able node for ``value``; its arrays are added to ``arrays``.

    Parameters
    ----------
    value : None, bool, int, float, str, list, tuple, dict, numpy/JAX array, numpy scalar,
        or xarray.DataArray (and nestings of these)
    arrays : dict
        Receives the arrays, by name.
    where : str
        Where the value sits (named in errors, and the base of its arrays' names).

    Raises
    ------
    TypeError
        For a value of another type, or an array that needs pickle.
    """
    import jax
    import xarray as xr

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, np.generic):
        arr = plain_array(value, where)
        name = _name(where, arrays)
        arrays[name] = arr
        return {"array": name, "scalar": True}
    if isinstance(value, (np.ndarray, jax.Array)):
        name = _name(where, arrays)
        arrays[name] = plain_array(value, where)
        return {"array": name, "jax": isinstance(value, jax.Array)}
    if isinstance(value, xr.DataArray):
        coords = {
            str(k): {
                "dims": list(map(str, c.dims)),
                "values": encode(c.values, arrays, f"{where}.{k}"),
            }
            for k, c in value.coords.items()
        }
        return {
            "dataarray": {
                "values": encode(np.asarray(value.values), arrays, f"{where}.values"),
                "dims": list(map(str, value.dims)),
                "coords": coords,
                "name": None if value.name is None else str(value.name),
            }
        }
    if isinstance(value, list):
        return [encode(v, arrays, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"tuple": [encode(v, arrays, f"{where}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"dict": {k: encode(v, arrays, f"{where}.{k}") for k, v in value.items()}}
        return {
            "items": [
                [encode(k, arrays, f"{where}.key{i}"), encode(v, arrays, f"{where}.{i}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    raise TypeError(
        f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be saved; "
        "saved values are numbers, strings, None, arrays, DataArrays, lists, tuples and dicts."
    )


def decode(node: Any, arrays: dict[str, np.ndarray], where: str = "value") -> Any:
    """The value :func:`encode` made ``node`` from.

    Raises
    ------
    FileFormatError
        If the node is malformed or names an array that is not there (a damaged file).
    """
    import jax.numpy as jnp
    import xarray as xr

    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [decode(v, arrays, f"{where}.{i}") for i, v in enumerate(node)]
    if not isinstance(node, dict) or len(set(node) & _TAGS) != 1:
        raise FileFormatError(f"{where}: malformed entry {str(node)[:80]!r}.")
    if "float" in node:
        text = node["float"]
        if text not in ("nan", "inf", "-inf"):
            raise FileFormatError(f"{where}: malformed float {text!r}.")
        return float(text)
    if "tuple" in node:
        return tuple(decode(v, arrays, f"{where}.{i}") for i, v in enumerate(node["tuple"]))
    if "dict" in node:
        return {str(k): decode(v, arrays, f"{where}.{k}") for k, v in node["dict"].items()}
    if "items" in node:
        out = {}
        for i, pair in enumerate(node["items"]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise FileFormatError(f"{where}: malformed dict item {i}.")
            key = decode(pair[0], arrays, f"{where}.key{i}")
            out[key.item() if isinstance(key, np.generic) else key] = decode(
                pair[1], arrays, f"{where}.{i}"
            )
        return out
    if "array" in node:
        name = node["array"]
        if not isinstance(name, str) or name not in arrays:
            raise FileFormatError(f"{where}: the file has no array {name!r}.")
        arr = arrays[name]
        if node.get("scalar"):
            return arr[()]
        return jnp.asarray(arr) if node.get("jax") else arr
    spec = node["dataarray"]
    coords = {
        k: (tuple(c["dims"]), np.asarray(decode(c["values"], arrays, f"{where}.{k}")))
        for k, c in spec["coords"].items()
    }
    values = np.asarray(decode(spec["values"], arrays, f"{where}.values"))
    return xr.DataArray(values, dims=tuple(spec["dims"]), coords=coords, name=spec["name"])
