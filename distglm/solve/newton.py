"""Per-output (proximal) Newton: a handful of passes over the data.

The population loss is a sum over outputs, so its Hessian is block-diagonal: one block of size
``D = (n_features + 1) * n_classes`` per output. Each pass over the data
(:meth:`~distglm.solve.PenalizedObjective.newton_pass`) gathers, for every output still being
fitted:

- the objective at several step sizes along the direction proposed after the previous pass
  (the line search, all of it in this one pass, each output on its own step);
- objective, gradient and Hessian block at the step the solver expects to accept (the full step,
  or the one a damped output needed last time).

At the coordinator, each output then takes its own step: the expected one when it satisfies the
Armijo condition (its gradient and Hessian are known there, so the next direction costs no pass),
or, where the change of its objective is within the rounding of float32 sums, the approximate
Wolfe conditions read from the gradient there; else the longest trial step that does (its
derivatives are taken at the next pass). The next
direction solves the Newton system of each block (Cholesky, ``k D^3 / 3`` flops), or, for
non-smooth penalties (Lasso, ElasticNet, GroupLasso), minimises the penalised quadratic model
by accelerated proximal gradient (proximal Newton; no pass over the data).

An output whose estimated gap (the decrease its quadratic model predicts, ``g' H^-1 g / 2`` for
smooth penalties) falls below its share of the tolerance has converged and drops out of later
passes; the fit ends when every output has.

The Hessian can be estimated on every ``s``-th row (``hessian_rows``): its cost per row and
output is ``D^2 / 2`` multiply-adds against ``2 D`` for the gradient, and an estimate on a few
thousand rows per output parameter still gives steps that cut the gap by orders of magnitude.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .checks import check_finite, check_finite_objective
from .state import NewtonContext, NewtonState, Status

__all__ = ["Newton", "default_hessian_rows", "hessian_stride"]

_ARMIJO = 1e-4

#: the array fields of NewtonState a step updates
_ARRAY_FIELDS = ("F", "hess", "known", "active", "gaps", "direction", "t_eval", "t_next", "delta")


def default_hessian_rows(n_params):
    """Rows the Hessian is estimated on by default: 64 per parameter of one output's block
    (``n_params = (n_features + 1) * n_classes``), at least 8,192."""
    return max(64 * int(n_params), 8192)


def hessian_stride(n_rows, block_rows, target_rows):
    """Largest power-of-two row stride leaving at least ``target_rows`` rows for the Hessian.

    The stride divides the kernel's block size, so every block contributes the same rows.
    """
    if target_rows is None or n_rows <= target_rows:
        return 1
    stride = 1
    while n_rows / (stride * 2) >= target_rows and (
        (block_rows and block_rows % (stride * 2) == 0) or (not block_rows and stride * 2 <= n_rows)
    ):
        stride *= 2
    return stride


def _null_fix(hess, ridge_diag, mask, n_classes):
    """Give curvature to the directions the loss cannot see.

    Adding the same constant to every class of one row changes no probability, so along
    ``e_row kron 1`` the Hessian of an unpenalised, unmasked row is exactly 0 (and so is the
    gradient). Adding ``alpha (e 1')(e 1')'`` there leaves the Newton step unchanged and makes
    the block positive definite.
    """
    k, D, _ = hess.shape
    c = n_classes
    ones = np.full((c, c), 1.0 / c)
    for j in range(k):
        pen = ridge_diag[:, j, :]  # (P1, c)
        free = np.all(pen == 0, axis=1)
        if mask is not None:
            m = np.concatenate([mask[:, j, :], np.ones((1, c))], axis=0)
            free &= np.all(m == 1, axis=1)
        if not np.any(free):
            continue
        alpha = max(float(np.trace(hess[j])) / D, 1e-12)
        for row in np.flatnonzero(free):
            sl = slice(row * c, (row + 1) * c)
            hess[j, sl, sl] += alpha * ones
    return hess


def _wolfe_slope(slope, grad, d, penalty_change, te):
    """Whether the step ``te d`` meets the approximate Wolfe conditions of Hager and Zhang,
    ``0.9 slope <= phi'(te) <= -0.8 slope``, read from the gradient at the new point. The
    caller asks this only where the change of the objective is within the rounding of its
    sums: near the optimum a Newton step's decrease is below what float32 sums resolve, and
    Armijo on the rounded value alone would refuse it. ``slope`` is ``phi'(0)`` (negative):
    ``g'd``, plus for a non-smooth penalty its change along the full step; ``phi'(te)`` adds
    ``penalty_change / te``, the non-smooth penalty's change over the step (0 for smooth
    penalties; exact where no coefficient crosses 0 inside the step)."""
    slope_new = float(np.vdot(grad, d)) + float(penalty_change) / te
    return 0.9 * slope <= slope_new <= -0.8 * slope


def _masked(hess, grad_flat, mask_flat):
    """Decouple masked coordinates: identity rows and columns, zero gradient."""
    if mask_flat is None:
        return hess, grad_flat
    m = mask_flat
    hess = hess * m[:, :, None] * m[:, None, :]
    idx = np.arange(hess.shape[1])
    hess[:, idx, idx] += 1.0 - m
    return hess, grad_flat * m


def _solve_blocks(hess, grad_flat):
    """``-H^-1 g`` per block, by Cholesky (eigen-decomposition if a block is not PD)."""
    k, D, _ = hess.shape
    out = np.empty_like(grad_flat)
    scale = np.maximum(np.trace(hess, axis1=1, axis2=2) / D, 1e-300)
    jitter = 1e-12 * scale
    for j in range(k):
        H = hess[j] + jitter[j] * np.eye(D)
        try:
            L = np.linalg.cholesky(H)
            z = np.linalg.solve(L, grad_flat[j])
            out[j] = -np.linalg.solve(L.T, z)
        except np.linalg.LinAlgError:
            w, V = np.linalg.eigh(H)
            w = np.where(w > 1e-10 * scale[j], w, np.inf)
            out[j] = -(V @ ((V.T @ grad_flat[j]) / w))
    return out


class Newton:
    """Per-output Newton (proximal Newton for non-smooth penalties), few passes over the data.

    Parameters
    ----------
    tol : float
        Stop when the estimated gap summed over outputs is at most ``tol * max(1, |F|)``; an
        output drops out once its own gap is below ``tol * max(1, |F|) / n_outputs``.
    maxiter : int
        Passes over the data (each iteration is one pass).
    hessian_rows : int or None
        Rows to estimate each Hessian on: the solver takes every ``s``-th row, with ``s`` the
        largest power of two leaving at least this many. ``None`` (default): ``64 * D``, at
        least 8,192 (``D = (n_features + 1) * n_classes``). ``0``: every row.
    trial_steps : tuple of float
        Fractions of the expected step also evaluated in each pass (the line search).
    inner_maxiter : int
        Iterations of the proximal-gradient solve of the quadratic model (non-smooth penalties).
    """

    name = "Newton"

    def __init__(
        self,
        tol=1e-8,
        maxiter=100,
        hessian_rows=None,
        trial_steps=(0.5, 0.25, 0.1),
        inner_maxiter=500,
    ):
        self.tol = float(tol)
        self.maxiter = int(maxiter)
        self.hessian_rows = hessian_rows if hessian_rows is None else int(hessian_rows)
        self.trial_steps = tuple(float(t) for t in trial_steps)
        if not all(0 < t < 1 for t in self.trial_steps):
            raise ValueError(f"trial_steps must lie in (0, 1); got {trial_steps!r}.")
        self.inner_maxiter = int(inner_maxiter)

    # ------------------------------------------------------------------ setup
    def prepare(self, objective, theta, ridge=0.0, mask=None) -> NewtonContext:
        """The Hessian row stride, the smooth penalty's curvature and the mask per block.

        Raises
        ------
        ValueError
            If the penalty is not a sum over outputs (Newton steps each output on its own).
        """
        del ridge, mask  # the penalty's own curvature and mask are used
        if not objective.penalty.is_separable(theta.shape):
            raise ValueError(
                f"The Newton solver takes one step per output and needs a penalty that is a sum "
                f"over outputs; this {type(objective.penalty.regularizer).__name__} is not (its "
                "groups span outputs). Use solver_name='ProximalGradient' (or 'auto')."
            )
        P1, K, c = theta.shape
        D = P1 * c
        n_rows = int(objective.data.n_rows) or None
        block = objective.data.block_rows
        target = self.hessian_rows
        if target is None:
            target = default_hessian_rows(D)
        stride = 1 if (target == 0 or n_rows is None) else hessian_stride(n_rows, block, target)
        pen_mask = objective.penalty.mask
        mask_flat = (
            None
            if pen_mask is None
            else np.transpose(
                np.concatenate([pen_mask, np.ones((1, K, c))], axis=0), (1, 0, 2)
            ).reshape(K, D)
        )
        return NewtonContext(
            stride=stride,
            ridge_diag=objective.penalty.curvature(theta.shape),
            mask=pen_mask,
            mask_flat=mask_flat,
            smooth=bool(objective.smooth),
        )

    def init(self, context, theta) -> NewtonState:
        _, K, _ = theta.shape
        return NewtonState(
            grad=np.zeros(theta.shape),
            known=np.zeros(K, bool),
            active=np.ones(K, bool),
            gaps=np.full(K, np.inf),
            direction=np.zeros(theta.shape),
            t_eval=np.zeros(K),
            t_next=np.ones(K),
            delta=np.zeros(K),
        )

    # ------------------------------------------------------------------ directions
    def _directions(self, objective, theta, ex, outputs):
        """Newton (or proximal Newton) directions and gap estimates for ``outputs``."""
        P1, _, c = theta.shape
        D = P1 * c
        g = np.transpose(ex["grad"][:, outputs], (1, 0, 2)).reshape(outputs.size, D)
        H = ex["hess"][outputs].copy()
        mask_flat = None if ex["mask_flat"] is None else ex["mask_flat"][outputs]
        H, g = _masked(H, g, mask_flat)
        if ex["smooth"]:
            # (the proximal path needs no fix: its inner solve never moves along the null
            # directions, and for penalised rows they are not null directions of the model)
            mask = None if ex["mask"] is None else ex["mask"][:, outputs]
            H = _null_fix(H, ex["ridge_diag"][:, outputs], mask, c)
            d = _solve_blocks(H, g)
            slope = np.einsum("kd,kd->k", g, d)
            gaps = -0.5 * slope
            delta = slope
        else:
            d, delta, gaps = self._prox_newton(objective, theta, outputs, H, g)
        ex["direction"][:, outputs] = np.transpose(d.reshape(outputs.size, P1, c), (1, 0, 2))
        ex["delta"][outputs] = delta
        ex["gaps"][outputs] = np.maximum(gaps, 0.0)

    def _prox_newton(self, objective, theta, outputs, H, g):
        """Minimise ``g'd + d'Hd/2 + h(theta + d)`` over the outputs' blocks (FISTA)."""
        P1, _, c = theta.shape
        k = outputs.size
        L = max(float(np.max(np.linalg.eigvalsh(H)[:, -1])), 1e-12)
        base = theta[:, outputs]

        def flat(a):
            return np.transpose(a, (1, 0, 2)).reshape(k, P1 * c)

        def unflat(v):
            return np.transpose(v.reshape(k, P1, c), (1, 0, 2))

        def prox(z_sub, step):
            full = theta.copy()
            full[:, outputs] = z_sub
            return objective.prox(full, step)[:, outputs]

        z = base.copy()
        y, t = z.copy(), 1.0
        tol = 1e-9 * max(1.0, float(np.max(np.abs(base))))
        for _ in range(self.inner_maxiter):
            dy = flat(y - base)
            grad_model = g + np.einsum("kij,kj->ki", H, dy)
            z_new = prox(y - unflat(grad_model) / L, 1.0 / L)
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            if np.vdot(y - z_new, z_new - z) > 0:  # restart
                y, t_new = z_new.copy(), 1.0
            else:
                y = z_new + ((t - 1) / t_new) * (z_new - z)
            change = float(np.max(np.abs(z_new - z)))
            z, t = z_new, t_new
            if change <= tol:
                break
        d = flat(z - base)
        full_z = theta.copy()
        full_z[:, outputs] = z
        h_new = objective.per_output(full_z)[outputs]
        h_old = objective.per_output(theta)[outputs]
        linear = np.einsum("kd,kd->k", g, d) + h_new - h_old
        quad = 0.5 * np.einsum("kd,kde,ke->k", d, H, d)
        # the smooth penalty (none here) is in g and H; per_output is the whole penalty
        return d, linear, -(linear + quad)

    def batch_step(self, objective, context, theta, state):
        """One Newton iteration on a new batch (``update``): two passes over it, one for the
        derivatives at ``theta`` and one for the line search of the step they give. Derivatives
        held in ``state`` belong to another batch and are not reused, and the Hessian stride
        is the new batch's."""
        context = self.prepare(objective, theta)
        fresh = dataclasses.replace(self.init(context, theta), iteration=state.iteration)
        theta, mid = self.step(objective, context, theta, fresh)
        if mid.converged:
            return theta, mid
        return self.step(objective, context, theta, mid)

    # ------------------------------------------------------------------ one pass
    def step(self, objective, context, theta, state):
        # work on copies: the state passed in stays as it was (the caller may keep it)
        ex: dict[str, Any] = {
            key: None if getattr(state, key) is None else getattr(state, key).copy()
            for key in (*_ARRAY_FIELDS, "grad")
        }
        ex["trials_left"] = state.trials_left
        ex.update(
            stride=context.stride,
            ridge_diag=context.ridge_diag,
            mask=context.mask,
            mask_flat=context.mask_flat,
            smooth=context.smooth,
        )
        P1, K, c = theta.shape
        theta = theta.copy()
        first = ex["F"] is None
        if first:
            ex["F"] = np.zeros(K)
            ex["hess"] = np.zeros((K, P1 * c, P1 * c))
        outputs = np.flatnonzero(ex["active"])
        t_eval = ex["t_eval"][outputs]
        evaluate_only = t_eval == 0
        # Trial steps (each costs a softmax over the data; with them a pass also needs a
        # second matrix product) only while steps get damped: the two passes after a damped
        # step. Full steps were accepted from the first one on every benchmark problem, so a
        # fit starts without them; a damped first step costs one backtracking pass.
        trials = 0 if first else len(self.trial_steps) * (ex["trials_left"] > 0)
        steps = np.outer(self.trial_steps[:trials], np.where(evaluate_only, 0.0, t_eval))
        trial, value, grad, hess = objective.newton_pass(
            theta, ex["direction"], outputs, steps, t_eval, ex["stride"]
        )
        check_finite_objective(value, grad)
        F_total = float(np.sum(value)) if first else float(np.sum(ex["F"]))
        floor = objective.precision * max(1.0, abs(F_total)) / K
        fresh = np.zeros(K, bool)  # derivatives taken at the output's new point this pass
        damped = moved = False
        # each output's non-smooth penalty change over its step, for the Wolfe slope: the
        # penalty is a sum over outputs, so one evaluation at every output's step serves all
        penalty_change = np.zeros(K)
        if not ex["smooth"]:
            step = np.zeros(K)
            step[outputs] = t_eval
            at_step = objective.per_output(theta + step[None, :, None] * ex["direction"])
            penalty_change = at_step - objective.per_output(theta)
        for i, j in enumerate(outputs):
            if evaluate_only[i]:
                fresh[j] = True
                continue
            d = ex["direction"][:, j]
            phi0, delta, te = ex["F"][j], ex["delta"][j], t_eval[i]
            if value[i] <= phi0 + _ARMIJO * te * delta or (
                value[i] <= phi0 + floor
                and _wolfe_slope(delta, grad[:, i], d, penalty_change[j], te)
            ):
                theta[:, j] += te * d
                fresh[j] = True
                moved = True
                ex["t_next"][j] = min(1.0, 2.0 * te)
                continue
            ok = [
                s
                for s in range(steps.shape[0])
                if trial[s, i] <= phi0 + _ARMIJO * steps[s, i] * delta
            ]
            damped = True
            if ok:
                s = max(ok, key=lambda s: steps[s, i])
                theta[:, j] += steps[s, i] * d
                moved = True
                ex["F"][j] = trial[s, i]
                ex["known"][j] = False  # derivatives at the new point come next pass
                ex["t_next"][j] = min(1.0, 2.0 * steps[s, i])
            elif ex["gaps"][j] <= floor:
                ex["active"][j] = False  # no decrease the float32 sums can resolve
            else:
                # backtrack from here: the minimiser of the quadratic through phi(0), the
                # slope and phi(te), kept within [0.1, 0.5] of te (below the trials, if any)
                curve = value[i] - phi0 - delta * te
                t_new = -delta * te * te / (2 * curve) if curve > 0 else 0.5 * te
                low = min(self.trial_steps) * te if steps.shape[0] else te
                ex["t_next"][j] = min(max(t_new, 0.1 * low), 0.5 * low)
        for i, j in enumerate(outputs):
            if fresh[j]:
                ex["F"][j] = value[i]
                ex["grad"][:, j] = grad[:, i]
                ex["hess"][j] = hess[i]
                ex["known"][j] = True
        check_finite(theta, "parameters")
        ex["trials_left"] = 2 if damped else max(0, ex["trials_left"] - 1)
        ready = np.flatnonzero(ex["active"] & ex["known"])
        if ready.size:
            self._directions(objective, theta, ex, ready)
        F = float(np.sum(ex["F"]))
        share = self.tol * max(1.0, abs(F)) / K
        ex["active"] &= ~(ex["known"] & (ex["gaps"] <= share))
        waiting = ex["active"] & ~ex["known"]
        ex["direction"][:, waiting | ~ex["active"]] = 0.0
        ex["t_eval"] = np.where(ex["active"] & ex["known"], ex["t_next"], 0.0)
        gap = float(np.sum(ex["gaps"][np.isfinite(ex["gaps"])]))
        # converged when every output has, when the summed estimate meets the tolerance, or
        # when the estimate is at the precision of float32 sums and no output could take a
        # step (further passes would chase rounding)
        scale = max(1.0, abs(F))
        stalled = not first and not moved and gap <= objective.precision * scale
        converged = not np.any(ex["active"]) or (
            np.all(ex["known"]) and (gap <= self.tol * scale or stalled)
        )
        return theta, NewtonState(
            iteration=state.iteration + 1,
            value=F,
            grad=ex["grad"],
            gap=gap,
            status=Status.CONVERGED if converged else Status.RUNNING,
            trials_left=ex["trials_left"],
            **{key: ex[key] for key in _ARRAY_FIELDS},
        )
