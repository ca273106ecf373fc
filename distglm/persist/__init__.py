"""Keeping results: saved models, the nemos round trip, and checkpointed fits.

- :mod:`~distglm.persist.codec`: plain values to JSON plus named arrays (no pickle).
- :mod:`~distglm.persist.bundle`: the files (npz or Zarr), written atomically, checked on read.
- :mod:`~distglm.persist.model`: an estimator's record, :func:`load_model`;
  :mod:`~distglm.persist.nemos_file`: files nemos 0.2.8 wrote;
  :mod:`~distglm.persist.translate`: nemos <-> distglm by name; :mod:`~distglm.persist.facet`:
  the estimators' ``save_params``/``to_nemos``/``from_nemos``.
- :mod:`~distglm.persist.checkpoint`: checkpoints of a fit in progress, and resuming them;
  :mod:`~distglm.persist.fingerprint`: what a checkpoint belongs to;
  :mod:`~distglm.persist.saved`: a checkpoint's content, :func:`read_checkpoint`.
"""

from .model import load_model, save_model
from .saved import read_checkpoint

__all__ = ["load_model", "read_checkpoint", "save_model"]
