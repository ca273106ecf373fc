"""scikit-learn's estimator conventions: tags, the fitted check and the notebook HTML repr.

A facet of the estimators (composed into them as a mixin with no state of its own).
scikit-learn is imported only inside these methods, so importing distglm never imports it.

distglm's estimators are tagged as classifiers (nemos 0.2.8 tags its classifiers as
regressors), so ``sklearn.base.is_classifier`` is true and an integer ``cv`` in
``cross_val_score`` or ``GridSearchCV`` means stratified folds, as for every scikit-learn
classifier.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["SklearnConventions"]


class SklearnConventions:
    """``__sklearn_tags__``, ``__sklearn_is_fitted__`` and ``_repr_html_`` for an estimator."""

    #: whether the model has an output axis (multi-output targets)
    _population: ClassVar[bool] = False
    #: the attribute scikit-learn's versions before 1.6 read for ``is_classifier``
    _estimator_type: ClassVar[str] = "classifier"

    def __sklearn_tags__(self) -> Any:
        """The estimator's tags (``sklearn.utils.Tags``), as ``sklearn.utils.get_tags`` reads.

        A classifier over 2-D float designs (or dicts of them) that drops rows with NaN/Inf;
        the population model takes 2-D labels (one column per output).
        """
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        population = self._population
        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(
                required=True,
                one_d_labels=not population,
                two_d_labels=population,
                multi_output=population,
                single_output=not population,
            ),
            classifier_tags=ClassifierTags(poor_score=False, multi_class=True),
            input_tags=InputTags(two_d_array=True, dict=True, allow_nan=True),
            non_deterministic=False,
            requires_fit=True,
        )

    def __sklearn_is_fitted__(self) -> bool:
        """True once a fit (or ``from_nemos`` / ``load_model``) has set the coefficients."""
        return getattr(self, "coef_", None) is not None

    def _repr_html_(self) -> str:
        """The notebook's HTML view of the estimator (scikit-learn's estimator diagram)."""
        from sklearn.utils import estimator_html_repr

        return estimator_html_repr(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        """Plain text and HTML, for notebooks that ask for a mime bundle."""
        return {"text/plain": repr(self), "text/html": self._repr_html_()}
