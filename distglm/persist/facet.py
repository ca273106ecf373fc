"""Keeping a model: the estimators' ``save_params``, ``to_nemos`` and ``from_nemos`` (mixed in).

The work is in :mod:`~distglm.persist.model` (files) and :mod:`~distglm.persist.translate`
(nemos); this facet only names it on the estimators.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["Keeping"]


class Keeping:
    """Saving, and the round trip with nemos 0.2.8 (mixed into the estimators)."""

    _population: ClassVar[bool]

    def save_params(self, filename, overwrite=False):
        """Save the model's parameters and fitted attributes (nemos' name for it).

        Parameters
        ----------
        filename : str or path
            A path ending in ``.npz`` gives one numpy zip file (read with
            ``allow_pickle=False``); any other path a directory holding a Zarr store (e.g.
            ``"model.zarr"``). Either holds JSON metadata and arrays; nothing is pickled.
        overwrite : bool
            Replace an existing saved model at ``filename``; without it an existing path is
            left alone and :class:`FileExistsError` is raised.

        Returns
        -------
        pathlib.Path
            Where the model was written (a temporary name first, renamed when complete).

        Raises
        ------
        FileExistsError
            If ``filename`` exists and ``overwrite`` is False, or it is not a distglm model.
        TypeError
            If the model holds something that cannot be saved without pickle (the message
            says what: a custom regularizer, class labels of mixed types or tuples).

        See Also
        --------
        distglm.load_model : reads it back.
        """
        from .model import save_model

        return save_model(self, filename, overwrite=overwrite)

    def to_nemos(self):
        """The nemos 0.2.8 estimator with this model's parameters and fitted arrays.

        Returns
        -------
        nemos.glm.ClassifierGLM or nemos.glm.ClassifierPopulationGLM
            Its predictions, probabilities and scores agree with this model's to float32
            rounding. A DataArray feature mask becomes an array aligned to the fitted labels;
            the solver state and history do not cross over, and distglm's Newton/auto solvers
            and own solver options have no nemos counterpart (a warning says so).
        """
        from .translate import to_nemos

        return to_nemos(self)

    @classmethod
    def from_nemos(cls, nemos_model):
        """The distglm estimator of a nemos 0.2.8 classifier (fitted or not).

        Parameters
        ----------
        nemos_model : nemos.glm.ClassifierGLM or nemos.glm.ClassifierPopulationGLM
            Of the kind matching this class.

        Returns
        -------
        ClassifierGLM or ClassifierPopulationGLM
            With nemos' parameters, classes and fitted ``coef_``/``intercept_``/
            ``dof_resid_``/``scale_``; ``solver_state_``, ``fit_history_`` and ``n_passes_``
            stay None.

        Raises
        ------
        TypeError
            If ``nemos_model`` is not the nemos classifier of this kind.
        """
        from .translate import estimator_from_nemos_values, nemos_values

        want = "ClassifierPopulationGLM" if cls._population else "ClassifierGLM"
        if type(nemos_model).__name__ != want or not type(nemos_model).__module__.startswith(
            "nemos."
        ):
            raise TypeError(
                f"{cls.__name__}.from_nemos takes a nemos.glm.{want}; got "
                f"{type(nemos_model).__module__}.{type(nemos_model).__name__}."
            )
        return estimator_from_nemos_values(nemos_values(nemos_model), "nemos model")
