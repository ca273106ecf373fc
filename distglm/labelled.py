"""Labelled results of a fitted model: ``to_xarray``, ``summary`` and the fitted repr.

A facet of the estimators (composed in as a mixin with no state of its own). Labels come from
the fit: ``features_`` (the data's ``feature`` coordinate, or ``0..n_features-1``; dict designs
give ``"key[i]"``), ``outputs_`` and ``classes_``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from .scoring import null_log_likelihood_per_sample

__all__ = ["OutputSummary", "Reporting", "Summary"]


def _coef_block(coef, population: bool) -> tuple[np.ndarray, list]:
    """coef_ as one (n_features, n_outputs, n_classes) array, with default feature labels."""
    if isinstance(coef, dict):
        parts = [np.asarray(coef[k]) for k in sorted(coef)]
        labels = [f"{k}[{i}]" for k in sorted(coef) for i in range(np.shape(coef[k])[0])]
        block = np.concatenate(parts, axis=0)
    else:
        block = np.asarray(coef)
        labels = list(range(block.shape[0]))
    return (block if population else block[:, None, :]), labels


@dataclasses.dataclass(frozen=True)
class OutputSummary:
    """One output's line of :class:`Summary`."""

    output: object
    n_samples: int | None
    mcfadden_r2: float | None
    top_features: tuple  # (feature label, largest |coefficient| over classes), largest first


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a fit gave, per output; ``print(summary)`` shows it as a table."""

    model: str
    penalty: str
    solver: str
    n_passes: int
    converged: bool
    classes: tuple
    n_features: int
    outputs: tuple[OutputSummary, ...]

    def __str__(self) -> str:
        head = (
            f"{self.model}: {len(self.outputs)} output(s), {len(self.classes)} classes "
            f"{list(self.classes)}, {self.n_features} features; {self.penalty}; {self.solver}, "
            f"{self.n_passes} passes, {'converged' if self.converged else 'NOT converged'}"
        )
        rows = [f"{'output':>12} {'samples':>9} {'McFadden R2':>12}  largest coefficients"]
        for o in self.outputs:
            n = "-" if o.n_samples is None else f"{o.n_samples:,}"
            r2 = "-" if o.mcfadden_r2 is None else f"{o.mcfadden_r2:.4f}"
            top = ", ".join(f"{f}: {v:.3g}" for f, v in o.top_features)
            rows.append(f"{o.output!s:>12} {n:>9} {r2:>12}  {top}")
        return "\n".join([head, *rows])


class Reporting:
    """``to_xarray``, ``summary`` and a repr that says what was fitted."""

    def _check_fitted_for(self, method: str) -> None:
        if getattr(self, "coef_", None) is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit before {method}.")

    def _feature_labels(self, default: list) -> list:
        features = getattr(self, "features_", None)
        return list(np.asarray(features)) if features is not None else default

    def to_xarray(self) -> xr.Dataset:
        """The fitted parameters as an ``xarray.Dataset``.

        Returns
        -------
        xarray.Dataset
            ``coef`` over (feature, output, class) and ``intercept`` over (output, class), with
            the data's feature and output labels and ``classes_`` as coordinates.
        """
        self._check_fitted_for("to_xarray")
        population = self._population  # type: ignore[attr-defined]
        block, default = _coef_block(self.coef_, population)  # type: ignore[attr-defined]
        intercept = np.asarray(self.intercept_)  # type: ignore[attr-defined]
        intercept = intercept if population else intercept[None]
        coords = {
            "feature": self._feature_labels(default),
            "output": list(np.asarray(self.outputs_)),  # type: ignore[attr-defined]
            "class": list(np.asarray(self.classes_)),  # type: ignore[attr-defined]
        }
        return xr.Dataset(
            {
                "coef": (("feature", "output", "class"), block),
                "intercept": (("output", "class"), intercept),
            },
            coords=coords,
            attrs={"model": type(self).__name__, "penalty": repr(self.regularizer)},  # type: ignore[attr-defined]
        )

    def _per_output_mcfadden(self, X, y) -> np.ndarray:
        """McFadden's pseudo-R2 of every output on in-memory ``(X, y)`` (rows with NaN dropped)."""
        from .inputs import as_label_array

        lp = np.asarray(self.predict_proba(X, return_type="log-proba"))  # type: ignore[attr-defined]
        population = self._population  # type: ignore[attr-defined]
        lp = lp if population else lp[:, None, :]
        labels = as_label_array(y, lp.shape[0], population)
        labels = labels if population else labels[:, None]
        keep = np.all(np.isfinite(lp), axis=(1, 2))
        if labels.dtype.kind == "f":
            keep &= np.all(np.isfinite(labels), axis=1)
        codes = np.asarray(self._encoder.encode(labels[keep]), np.int64)  # type: ignore[attr-defined]
        ll = np.take_along_axis(lp[keep], codes[..., None], axis=-1)[..., 0].mean(axis=0)
        null = null_log_likelihood_per_sample(codes, lp.shape[-1]).mean(axis=0)
        return 1.0 - ll / null

    def summary(self, X=None, y=None, n_top: int = 3) -> Summary:
        """Per output: samples, McFadden R2 (when in-memory ``X, y`` are given) and the
        ``n_top`` features with the largest coefficients (largest absolute value over classes).

        Returns
        -------
        Summary
            A frozen value; ``print`` it for a table.
        """
        self._check_fitted_for("summary")
        ds = self.to_xarray()
        r2 = self._per_output_mcfadden(X, y) if X is not None and y is not None else None
        profile = getattr(self, "fit_profile_", None) or {}
        counts = profile.get("n_samples")
        lines = []
        for j, out in enumerate(ds["output"].values):
            size = np.abs(ds["coef"].values[:, j, :]).max(axis=1)
            order = np.argsort(-size, kind="stable")[:n_top]
            top = tuple((ds["feature"].values[i].item(), float(size[i])) for i in order)
            n = None if counts is None else int(np.asarray(counts)[j])
            if n is None and X is not None:
                n = int(np.shape(X[sorted(X)[0]] if isinstance(X, dict) else X)[0])
            lines.append(OutputSummary(out.item(), n, None if r2 is None else float(r2[j]), top))
        state = self.solver_state_  # type: ignore[attr-defined]
        return Summary(
            model=type(self).__name__,
            penalty=self._penalty_text(),
            solver=str(self.solver_),  # type: ignore[attr-defined]
            n_passes=int(self.n_passes_),  # type: ignore[attr-defined]
            converged=str(getattr(state, "status", "")).endswith("converged"),
            classes=tuple(np.asarray(self.classes_).tolist()),  # type: ignore[attr-defined]
            n_features=int(ds.sizes["feature"]),
            outputs=tuple(lines),
        )

    def _penalty_text(self) -> str:
        reg = self.regularizer  # type: ignore[attr-defined]
        strength = getattr(self, "regularizer_strength", None)
        name = type(reg).__name__
        return name if strength is None or not reg.has_strength else f"{name}({strength!r})"

    def fitted_description(self) -> str:
        """One line on what was fitted, or ``"not fitted"``."""
        if getattr(self, "coef_", None) is None:
            return "not fitted"
        ds = self.to_xarray()
        state = self.solver_state_  # type: ignore[attr-defined]
        status = str(getattr(state, "status", "unknown")).rsplit(".", 1)[-1]
        return (
            f"fitted: {ds.sizes['output']} output(s) x {ds.sizes['class']} classes "
            f"{list(ds['class'].values.tolist())}, {ds.sizes['feature']} features, "
            f"{self._penalty_text()}, {self.solver_} {self.n_passes_} passes, {status}"  # type: ignore[attr-defined]
        )
