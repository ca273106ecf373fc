"""Files of JSON metadata plus named arrays, written atomically and checked when read.

Two containers hold the same content:

- **npz** (a path ending in ``.npz``, or any file): one uncompressed numpy zip; the metadata is
  the member ``__distglm__`` (UTF-8 JSON bytes). Read with ``allow_pickle=False``.
- **Zarr** (any other path: a directory, e.g. ``model.zarr``): a Zarr group; the metadata is
  its ``distglm`` attribute, each array a Zarr array (text arrays are stored as their UTF-32
  code points, so every reader can open them).

The metadata records a manifest of the arrays (dtype, shape, CRC-32 of the bytes) and a CRC-32
of itself: a file cut short, an array or the metadata changed after writing, or a format newer
than this distglm reads is refused with :class:`~distglm.exceptions.FileFormatError` saying
which. Writes go to a temporary name next to the target and are renamed into place once
complete, so an interrupted write never leaves a file that reads as valid; an existing target is
replaced only with ``overwrite=True`` and only when it is itself a distglm file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import FileFormatError
from .codec import ARRAY_KINDS

__all__ = [
    "FORMAT_VERSION",
    "check_target",
    "is_npz_path",
    "read_bundle",
    "read_header",
    "remove_stale_temps",
    "write_bundle",
]

#: the version of the file layout this distglm writes (and the newest it reads)
FORMAT_VERSION = 1

_META = "__distglm__"
_ATTR = "distglm"


def is_npz_path(path) -> bool:
    """Whether ``path`` names the npz container (ends in ``.npz``, or is an existing file)."""
    p = Path(path)
    return p.suffix.lower() == ".npz" or p.is_file()


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()


def _sealed(meta: dict, arrays: dict[str, np.ndarray], kind: str) -> dict:
    for name, arr in arrays.items():
        if arr.dtype.kind not in ARRAY_KINDS:
            raise TypeError(f"Array {name!r} of dtype {arr.dtype} cannot be saved.")
    body = dict(meta)
    body["format"] = kind
    body["format_version"] = FORMAT_VERSION
    body["arrays"] = {
        name: {"dtype": arr.dtype.str, "shape": list(arr.shape), "crc32": _crc(arr)}
        for name, arr in arrays.items()
    }
    body.pop("crc32", None)
    body["crc32"] = zlib.crc32(_canonical(body))
    return body


def _temp_name(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale_temps(path) -> list[Path]:
    """Remove what writes to ``path`` left behind when their process was killed mid-write
    (temporary names next to it); returns what was removed."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.tmp-*")) if path.parent.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_target(path: Path, overwrite: bool, kind: str) -> None:
    """Raise unless ``path`` may be written: absent, or (with ``overwrite``) a distglm file of
    ``kind`` or an empty directory."""
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it (nothing was written)."
        )
    try:
        found = read_header(path)
    except FileFormatError as e:
        if path.is_dir() and not any(path.iterdir()):
            return
        raise FileExistsError(
            f"{path} exists and is not a distglm file ({e}); distglm replaces only its own "
            "files. Remove it or choose another path."
        ) from None
    if found.get("format") != kind:
        raise FileExistsError(
            f"{path} is a {found.get('format')!r} file, not a {kind!r} one; not replacing it."
        )


def _replace(temp: Path, path: Path) -> None:
    """Move the complete ``temp`` onto ``path`` (atomic for files; for a directory the old one
    is moved aside first, so ``path`` is at every moment either the old or the new file)."""
    if temp.is_dir() and path.exists():
        old = _temp_name(path, "old")
        os.replace(path, old)
        os.replace(temp, path)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
        os.replace(temp, path)
    else:
        os.replace(temp, path)


def write_bundle(
    path,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    kind: str,
    overwrite: bool,
    npz: bool | None = None,
    checked: bool = False,
    sync_dir: bool = True,
) -> Path:
    """Write metadata and arrays to ``path`` (npz or Zarr by the path), atomically.

    Parameters
    ----------
    path : str or path
    meta : dict
        JSON-able (no non-finite floats: the codec tags them).
    arrays : dict of str -> numpy array
    kind : str
        What the file is (``"distglm-model"``, ``"distglm-checkpoint"``).
    overwrite : bool
        Replace an existing distglm file of this kind at ``path``.
    npz : bool, optional
        Force the container (by default: npz for a ``.npz`` path or an existing file).
    checked : bool
        The caller has already checked the target (:func:`check_target`); skip reading it.
    sync_dir : bool
        Also flush the directory after the rename, so the new name itself survives a power
        loss (without it the file's data is still flushed before the rename, so a crash leaves
        the previous file or the new one, both complete).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False, or it is not a distglm file.
    """
    path = Path(path)
    if not checked:
        check_target(path, overwrite, kind)
    body = _sealed(meta, arrays, kind)
    npz = is_npz_path(path) if npz is None else npz
    temp = _temp_name(path, "tmp")
    try:
        if npz:
            _write_npz(temp, body, arrays)
        else:
            _write_zarr(temp, body, arrays)
        _replace(temp, path)
        if sync_dir:
            _fsync_dir(path.parent)
    except BaseException:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        elif temp.exists():
            temp.unlink()
        raise
    return path


def _write_npz(temp: Path, body: dict, arrays: dict[str, np.ndarray]) -> None:
    text = np.frombuffer(_canonical(body), dtype=np.uint8)
    with open(temp, "wb") as f:
        members: dict[str, Any] = {_META: text, **arrays}
        np.savez(f, **members)
        f.flush()
        os.fsync(f.fileno())


def _text_codes(arr: np.ndarray) -> np.ndarray:
    """A str array as its UTF-32 code points, shape (*arr.shape, width)."""
    width = max(arr.dtype.itemsize // 4, 1)
    fixed = np.ascontiguousarray(arr, dtype=f"<U{width}")
    return fixed.view(np.uint32).reshape(*arr.shape, width)


def _write_zarr(temp: Path, body: dict, arrays: dict[str, np.ndarray]) -> None:
    import zarr

    group = zarr.open_group(str(temp), mode="w-")
    for name, arr in arrays.items():
        data = _text_codes(arr) if arr.dtype.kind == "U" else arr
        if data.dtype.kind == "S":
            data = np.ascontiguousarray(data).view(np.uint8).reshape(*arr.shape, arr.dtype.itemsize)
        z = group.create_array(
            name, shape=data.shape, dtype=data.dtype, chunks=tuple(max(s, 1) for s in data.shape)
        )
        if data.size:
            z[...] = data
    group.attrs[_ATTR] = _canonical(body).decode()


# ---------------------------------------------------------------------------- reading
def _parse(text: bytes | str, path: Path) -> dict:
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{path}: its metadata is not valid JSON ({e}).") from None
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: its metadata is not a JSON object.")
    return meta


def _check_header(meta: dict, path: Path) -> dict:
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise FileFormatError(f"{path}: its metadata has no format version.")
    if version > FORMAT_VERSION:
        raise FileFormatError(
            f"{path} was written by a newer distglm ({meta.get('distglm_version')!r}, file "
            f"format {version}); this distglm reads formats up to {FORMAT_VERSION}. Upgrade "
            "distglm to read it."
        )
    return meta


def _open_npz(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise FileFormatError(
            f"{path} is not a readable .npz file (truncated or damaged?): {e}"
        ) from None


def _npz_member(npz, name: str, path: Path) -> np.ndarray:
    try:
        return npz[name]
    except KeyError:
        raise FileFormatError(f"{path}: the array {name!r} is missing.") from None
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise FileFormatError(
                f"{path}: the array {name!r} holds pickled Python objects; distglm never "
                "unpickles (it could run code from the file)."
            ) from None
        raise FileFormatError(f"{path}: the array {name!r} cannot be read: {e}") from None
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
        raise FileFormatError(f"{path}: the array {name!r} is damaged or cut short: {e}") from None


def read_header(path) -> dict:
    """The metadata of a distglm file (not checked against its arrays).

    Raises
    ------
    FileFormatError
        If ``path`` is no readable distglm file.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path} does not exist.")
    if path.is_file():
        with _open_npz(path) as npz:
            if _META not in npz.files:
                raise FileFormatError(f"{path} is an .npz file but not one distglm wrote.")
            return _parse(_npz_member(npz, _META, path).tobytes(), path)
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        text = group.attrs.get(_ATTR)
    except Exception as e:  # zarr raises many types for what is not a store
        raise FileFormatError(f"{path} is not a distglm Zarr store: {e}") from None
    if not isinstance(text, str):
        raise FileFormatError(
            f"{path} has no distglm metadata: not a distglm file, or a write that did not finish."
        )
    return _parse(text, path)


def _zarr_arrays(path: Path, manifest: dict) -> dict[str, np.ndarray]:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    out = {}
    for name, entry in manifest.items():
        try:
            node: Any = group[name]
            data = np.asarray(node[...])
        except KeyError:
            raise FileFormatError(f"{path}: the array {name!r} is missing.") from None
        except Exception as e:  # zarr/numcodecs raise many types for damaged chunks
            raise FileFormatError(
                f"{path}: the array {name!r} is damaged or cut short: {e}"
            ) from None
        dtype = np.dtype(entry["dtype"])
        if dtype.kind in "US" and data.ndim >= 1:
            data = np.ascontiguousarray(data).reshape(-1).view(dtype).reshape(data.shape[:-1])
        out[name] = data
    return out


def read_bundle(path, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and check a file :func:`write_bundle` wrote.

    Returns
    -------
    meta : dict
    arrays : dict of str -> numpy array

    Raises
    ------
    FileFormatError
        If the file is missing, not a distglm file of ``kind``, truncated, damaged, modified
        after it was written (its CRCs disagree), or of a newer format.
    """
    path = Path(path)
    meta = _check_header(read_header(path), path)
    if meta.get("format") != kind:
        raise FileFormatError(f"{path} is a {meta.get('format')!r} file, not a {kind!r} one.")
    body = {k: v for k, v in meta.items() if k != "crc32"}
    if meta.get("crc32") != zlib.crc32(_canonical(body)):
        raise FileFormatError(
            f"{path}: its metadata does not match its recorded CRC-32; the file was modified "
            "or damaged after it was written."
        )
    manifest = meta.get("arrays")
    if not isinstance(manifest, dict):
        raise FileFormatError(f"{path}: its metadata has no array manifest.")
    if path.is_file():
        with _open_npz(path) as npz:
            arrays = {name: _npz_member(npz, name, path) for name in manifest}
    else:
        arrays = _zarr_arrays(path, manifest)
    for name, entry in manifest.items():
        arr = arrays[name]
        if arr.dtype.str != entry["dtype"] or list(arr.shape) != entry["shape"]:
            raise FileFormatError(
                f"{path}: the array {name!r} is {arr.dtype.str} {list(arr.shape)}; the "
                f"manifest says {entry['dtype']} {entry['shape']}."
            )
        if _crc(arr) != entry["crc32"]:
            raise FileFormatError(
                f"{path}: the array {name!r} does not match its recorded CRC-32; the file was "
                "modified or damaged after it was written."
            )
    return meta, arrays
