"""The hot path: log-densities and moments of all Gaussian components at once.

:class:`GaussianKernel` evaluates the (n, K) log-density matrix and the
moments of all components with a few large matrix products: it centres the data
at one point ``c`` and writes every Gaussian log-density as a linear function of
the features ``[quadratic terms of x - c, x - c, 1]``. A component whose mean is
so far from ``c`` (in its own Mahalanobis metric) that this expansion would lose
digits is evaluated directly about its own mean instead, so accuracy never
depends on where the data sit. :func:`gaussian_moments` is the direct,
textbook computation of the same moments.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compiled import use_numba
from .fused import best_first_e_step, dense_e_step
from .moments import GaussianMoments

if TYPE_CHECKING:
    from .strategies import CovarianceStrategy

_LOG_2PI = math.log(2.0 * math.pi)

#: A component is scored by the expanded (fast) formula only while the squared
#: Mahalanobis distance between its mean and the centring point (plus d, for its
#: own spread), times its variance inflation (``max_i Lambda_ii Sigma_ii``, large
#: when features are nearly collinear), stays below this: the rounding error of the
#: expansion is about ``eps`` times that product, so this keeps it near 1e-11.
#: Other components are evaluated directly, about their own means.
EXPANSION_MAX_DISTANCE = 1e5

#: Above this many quadratic features (full covariance with d > 63) the expansion
#: costs more memory than it saves, and every component is evaluated directly.
EXPANSION_MAX_FEATURES = 2016

#: The same bound for float32 data, whose features and products are float32: the
#: rounding error of the expansion is then about ``6e-8 * distance``, kept near 1e-5.
EXPANSION_MAX_DISTANCE_32 = 200.0

#: The fused kernel flushes posteriors below ``exp(EXP_FLUSH)`` ~ 7e-218 of a row's
#: largest to exact zeros. They cannot change a sum of posteriors (>= 1), and a
#: component whose whole weight is made of them is empty for the M-step too (its
#: divisor is nk + NK_EPS ~ 2e-15); but computing them, and products of them with the
#: features (subnormal numbers), is slow.
EXP_FLUSH = -500.0

#: The same with float32 arithmetic: below ``exp(-87)`` ~ 1.6e-38 a float32 posterior
#: is subnormal. Rows flushed this way add less than ``n * 1.6e-38`` to a component's
#: weight, far below the floor ``NK_EPS`` (2e-15 of the total weight) every average
#: divides by, so this changes no parameter; it lets the kernel skip far more rows.
EXP_FLUSH_32 = -87.0

#: With float32 arithmetic (compiled), at most this many features and some component too
#: far for the expansion, every component is scored about its own mean on every row (see
#: ``fused``).
DENSE_MAX_FEATURES_32 = 16

#: :meth:`GaussianKernel.posteriors` of rows whose largest log-density is below this
#: come from the differences of the log-densities (rounding error > 0.1 nat here).
_FAR_LOG_DENSITY = -(2.0**50)


#: ``backend="auto"`` runs the compiled kernels on at least this many rows. Below it the
#: numpy path is fast enough, and a fresh process would spend more time importing numba
#: and loading the compiled code (0.5-1 s) than the whole fit takes.
FUSED_MIN_ROWS = 20_000


def _use_numba(backend: str, n_rows: int | None = None) -> bool:
    """Whether to run a compiled kernel: ``"numba"`` always, ``"auto"`` when numba is
    installed and there are at least :data:`FUSED_MIN_ROWS` rows."""
    compiled = use_numba(backend)
    return compiled if backend == "numba" else compiled and (n_rows is None
                                                            or n_rows >= FUSED_MIN_ROWS)


#: Multiply-adds per matrix product on one block of rows. About 4e5 keeps a block
#: of features in L2 cache and each product small enough for BLAS to run it on one
#: thread: measured on 2 cores, threading these products gains nothing when the
#: machine is idle and costs up to 20x when it is busy (thread hand-offs).
_BLOCK_MULADDS = 3 << 17


# ---------------------------------------------------------------------------
# Moments from responsibilities, exactly centred (initialisation, small data)
# ---------------------------------------------------------------------------
def gaussian_moments(
    X: np.ndarray,
    resp: np.ndarray,
    strategy: CovarianceStrategy,
    ref: np.ndarray | None = None,
) -> GaussianMoments:
    """Moments of ``X`` weighted by ``resp``, computed directly about ``ref``.

    One pass per component, like a textbook M-step; use
    :meth:`GaussianKernel.moments` on large data.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    resp : ndarray of shape (n, K)
        Non-negative weights (responsibilities times sample weights).
    strategy : CovarianceStrategy
    ref : ndarray of shape (K, d), optional
        Reference points. By default each component's weighted mean (two-pass
        centring); a component with zero weight is referenced at the mean of X.

    Returns
    -------
    GaussianMoments
        Of class ``strategy.moments``.
    """
    hard = _hard_moments(X, resp, strategy, ref)
    if hard is not None:
        return hard
    resp_t = np.ascontiguousarray(resp.T)  # columns as contiguous rows
    nk = resp_t.sum(axis=1)
    if ref is None:
        ref = np.empty((resp.shape[1], X.shape[1]))
        pos = nk > 0
        if not pos.all():
            ref[:] = X.mean(axis=0)
        ref[pos] = (resp_t[pos] @ X) / nk[pos, None]
    kind = strategy.moments
    sum_x = np.empty_like(ref)
    sum_xx = []
    for k in range(resp.shape[1]):
        r = resp_t[k]
        rows = np.flatnonzero(r)
        if 2 * rows.size < r.size:
            # Hard assignments (k-means, one seed per component): rows of weight zero
            # add nothing, so sum over the others only; K times less work.
            xc, r = np.asarray(X[rows], dtype=np.float64), r[rows]
            xc -= ref[k]
        else:
            xc = X - ref[k]
        sum_x[k] = r @ xc
        sum_xx.append(kind.direct(xc, r))
    return kind(nk, ref, sum_x, np.stack(sum_xx))


def _hard_moments(
    X: np.ndarray, resp: np.ndarray, strategy: CovarianceStrategy, ref: np.ndarray | None
) -> GaussianMoments | None:
    """:func:`gaussian_moments` when every row has at most one non-zero weight, else None."""
    n, K = resp.shape
    if n < 4 * K:
        return None
    labels = np.argmax(resp, axis=1)
    w = resp[np.arange(n), labels]
    # weights are >= 0, so each row holds at most one non-zero weight exactly when the
    # non-zero entries are as many as the rows with a non-zero maximum
    if np.count_nonzero(resp) != np.count_nonzero(w):
        return None
    return label_moments(X, labels, K, strategy, w, ref)


def label_moments(
    X: np.ndarray,
    labels: np.ndarray,
    n_components: int,
    strategy: CovarianceStrategy,
    weights: np.ndarray | None = None,
    ref: np.ndarray | None = None,
) -> GaussianMoments:
    """:func:`gaussian_moments` of hard assignments: row i has weight ``weights[i]``
    (default 1) in component ``labels[i]`` and 0 in the others.

    Hard assignments (k-means labels) are the usual start of a fit: sorting the rows
    by component makes each component's rows one contiguous block, so every row is
    read once instead of once per component, and no (n, K) weight matrix is formed.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    labels : ndarray of int, shape (n,)
        Values in ``0 .. n_components - 1``.
    n_components : int
    strategy : CovarianceStrategy
    weights : ndarray of shape (n,), optional
    ref : ndarray of shape (K, d), optional
        As in :func:`gaussian_moments`.

    Returns
    -------
    GaussianMoments
    """
    K = n_components
    w = np.ones(X.shape[0]) if weights is None else weights
    order = np.argsort(labels.astype(np.int16 if K < 2**15 else np.int64), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=K))])
    Xs = np.asarray(np.take(X, order, axis=0), dtype=np.float64)  # faster than X[order]
    ws = w[order]
    kind = strategy.moments
    nk = np.empty(K)
    refs = np.empty((K, X.shape[1]))
    sum_x = np.empty_like(refs)
    sum_xx = []
    d = X.shape[1]
    step = max(256, _BLOCK_MULADDS // (d * d))  # products BLAS runs on one thread
    for k in range(K):
        xc, r = Xs[bounds[k] : bounds[k + 1]], ws[bounds[k] : bounds[k + 1]]
        nk[k] = r.sum()
        if ref is not None:
            refs[k] = ref[k]
        elif nk[k] > 0:
            refs[k] = (r @ xc) / nk[k]
        else:
            refs[k] = X.mean(axis=0)
        xc -= refs[k]
        sum_x[k] = r @ xc
        sxx = kind.direct(xc[:step], r[:step])
        for s in range(step, len(r), step):
            sxx = sxx + kind.direct(xc[s : s + step], r[s : s + step])
        sum_xx.append(sxx)
    return kind(nk, refs, sum_x, np.stack(sum_xx))


# ---------------------------------------------------------------------------
# The hot path: log-densities and moments of all components at once
# ---------------------------------------------------------------------------
class GaussianKernel:
    """Log-densities and moments of K Gaussian components, prepared for one parameter set.

    The data are centred once at ``c`` (the weighted mean of the means) and the
    log-density of component k is written as ``W_k . f(x)`` with the features
    ``f(x) = [quadratic terms of x - c, x - c, 1]``, so the (K, n) log-density
    matrix is one matrix product ``W @ F`` and the moments of all components
    are one more, ``F @ resp``. The data are processed in blocks of rows that
    fit in cache. Components too far from ``c`` for the expansion to be exact
    to about 1e-11 (see :data:`EXPANSION_MAX_DISTANCE`), and all components
    when d is large, are evaluated directly about their own means.

    Parameters
    ----------
    strategy : CovarianceStrategy
    means : ndarray of shape (K, d)
    precisions_cholesky : ndarray
        In the strategy's shape.
    weights : ndarray of shape (K,), optional
        Mixing weights; when given, ``log(weights)`` is added to the
        log-densities and the weights choose the centring point.
    dtype : {numpy.float64, numpy.float32}, optional
        Precision of the data. With float32 the fused kernel builds the features
        and the products in float32, the centring point is a float32 number (so
        the float32 features are referenced exactly at it) and the expansion is
        used only within :data:`EXPANSION_MAX_DISTANCE_32`.
    """

    def __init__(
        self,
        strategy: CovarianceStrategy,
        means: np.ndarray,
        precisions_cholesky: np.ndarray,
        weights: np.ndarray | None = None,
        dtype: Any = np.float64,
    ) -> None:
        means = np.asarray(means, dtype=float)
        K, d = means.shape
        self.strategy = strategy
        self.kind = strategy.moments
        self.means = means
        self.precisions_cholesky = np.asarray(precisions_cholesky, dtype=float)
        self.n_components, self.n_features = K, d
        self.dtype = np.dtype(dtype)
        single = self.dtype == np.float32

        lam = strategy._precision_terms(self.precisions_cholesky, K)
        w = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, dtype=float)
        self.centre = (w @ means) / w.sum() if w.sum() > 0 else means.mean(axis=0)
        if single:
            self.centre = self.centre.astype(np.float32).astype(np.float64)
        mc = means - self.centre
        lam_mc = strategy.apply_precision(lam, mc)
        dist = np.einsum("kd,kd->k", mc, lam_mc)

        const = strategy.log_det_cholesky(self.precisions_cholesky, K, d) - 0.5 * d * _LOG_2PI
        self.log_weights = np.zeros(K)
        if weights is not None:
            with np.errstate(divide="ignore"):
                self.log_weights = np.log(w)
            const = const + self.log_weights
        self.const = const

        self.nq = self.kind.n_features(d)
        expand = self.nq <= EXPANSION_MAX_FEATURES
        if expand:
            inflation = strategy.variance_inflation(self.precisions_cholesky, K)
            limit = EXPANSION_MAX_DISTANCE_32 if single else EXPANSION_MAX_DISTANCE
            near = (dist + d) * inflation < limit
            if single and d <= DENSE_MAX_FEATURES_32 and not near.all() and use_numba("auto"):
                # float32, some component too far for the expansion: the compiled dense
                # path for all of them beats expanding the near ones and scoring the
                # others best first (W1's first iterations: 29 -> 14 ms)
                near[:] = False
        else:
            near = np.zeros(K, dtype=bool)
        self.fast = np.flatnonzero(near)
        self.direct = np.flatnonzero(~near)
        self.n_rows = self.nq + d + 1 if self.fast.size else 0
        self.expandable = expand
        if expand:
            nf = self.nq + d + 1
            W = np.empty((K, nf))
            W[:, : self.nq] = strategy.quadratic_coefficients(lam, K, d)
            W[:, self.nq : self.nq + d] = lam_mc
            W[:, -1] = const - 0.5 * dist
            self.W = np.ascontiguousarray(W[self.fast])
            # The compiled kernel scores a far component about its mean rounded to the
            # data's precision (the mean itself in float64), through a dense factor.
            self.direct_centres = means[self.direct].astype(self.dtype).astype(np.float64)
        work_per_row = self.n_rows * K if self.fast.size else K * d * d
        self.block = int(min(8192, max(128, _BLOCK_MULADDS // work_per_row)))

    # -- per block -------------------------------------------------------------
    def _buffer(self) -> np.ndarray | None:
        if not self.fast.size:
            return None
        buf = np.empty((self.n_rows, self.block))
        buf[-1] = 1.0
        return buf

    def _features(self, xb: np.ndarray, buf: np.ndarray | None) -> np.ndarray | None:
        if buf is None:
            return None
        F = buf[:, : xb.shape[0]]
        xt = F[self.nq : self.nq + self.n_features]
        np.subtract(xb.T, self.centre[:, None], out=xt)
        self.kind.fill_features(xt, F[: self.nq])
        return F

    def _log_prob_block(self, xb: np.ndarray, F: np.ndarray | None) -> np.ndarray:
        """Log-densities (plus log-weights) of a block, shape (K, B)."""
        lp = np.empty((self.n_components, xb.shape[0]))
        if F is not None:
            if self.direct.size:
                lp[self.fast] = self.W @ F
            else:
                np.matmul(self.W, F, out=lp)
        for k in self.direct:
            xc = xb - self.means[k]
            maha = self.strategy.mahalanobis(xc, self.precisions_cholesky, k)
            lp[k] = self.const[k] - 0.5 * maha
        far = np.isnan(lp).any(axis=0)
        if far.any():
            self._log_prob_far(xb[far], lp, far)
        return lp

    def _log_prob_far(self, xf: np.ndarray, lp: np.ndarray, cols: np.ndarray) -> None:
        """Rows so far out (beyond ~1e154) that the expansion overflowed to inf - inf.

        They are evaluated directly; a distance that still overflows is infinite,
        and the log-density ``-inf``, never NaN.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(self.n_components):
                maha = self.strategy.mahalanobis(xf - self.means[k], self.precisions_cholesky, k)
                lp[k, cols] = self.const[k] - 0.5 * np.where(np.isnan(maha), np.inf, maha)

    def _accumulate(self, xb: np.ndarray, F: np.ndarray | None, rt: np.ndarray, acc: dict) -> None:
        """Add the moments of a block with responsibilities ``rt`` (K, B) to ``acc``."""
        if F is not None:
            r_fast = rt if not self.direct.size else rt[self.fast]
            acc["G"] += F @ r_fast.T
        for k in self.direct:
            xc = xb - self.means[k]
            r = rt[k]
            acc["nk"][k] += r.sum()
            acc["sum_x"][k] += r @ xc
            acc["sum_xx"][k] += self.kind.direct(xc, r)

    def _new_acc(self) -> dict:
        K, d = self.n_components, self.n_features
        xx_shape = self.kind.unpack(np.zeros((self.nq, K)), d).shape
        return {
            "G": np.zeros((self.n_rows, self.fast.size)),
            "nk": np.zeros(K),
            "sum_x": np.zeros((K, d)),
            "sum_xx": np.zeros(xx_shape),
        }

    def _finish(self, acc: dict) -> GaussianMoments:
        nk, sum_x, sum_xx = acc["nk"], acc["sum_x"], acc["sum_xx"]
        ref = np.empty((self.n_components, self.n_features))
        ref[self.direct] = self.means[self.direct]
        if self.fast.size:
            G, f, d, nq = acc["G"], self.fast, self.n_features, self.nq
            ref[f] = self.centre
            nk[f] = G[-1]
            sum_x[f] = G[nq : nq + d].T
            sum_xx[f] = self.kind.unpack(G[:nq], d)
        return self.kind(nk, ref, sum_x, sum_xx)

    # -- public ------------------------------------------------------------------
    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Log-density (plus log-weight when weights were given) of every sample.

        Parameters
        ----------
        X : ndarray of shape (n, d)

        Returns
        -------
        ndarray of shape (n, K)
        """
        n = X.shape[0]
        out = np.empty((n, self.n_components))
        buf = self._buffer()
        # rows beyond ~1e154 overflow in the expansion; they are detected (NaN) and
        # evaluated directly, so the overflow itself is no news
        with np.errstate(over="ignore", invalid="ignore"):
            for s in range(0, n, self.block):
                xb = X[s : s + self.block]
                out[s : s + xb.shape[0]] = self._log_prob_block(xb, self._features(xb, buf)).T
        return out

    def posteriors(self, X: np.ndarray, log_prob: np.ndarray | None = None) -> np.ndarray:
        """Posterior probability of every component (weighted as given), at any point.

        Rows so far out that the log-densities lose their differences to rounding
        (every squared Mahalanobis distance above ~2**51, about 5e7 standard
        deviations, where a log-density's rounding error reaches one nat) or
        overflow to ``-inf`` (beyond ~1e154) get their posteriors from the differences
        of the log-densities, computed without cancellation
        (:func:`~emframe.inference.gaussian.far.far_posteriors`): never NaN.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        log_prob : ndarray of shape (n, K), optional
            :meth:`log_prob` of ``X``, if at hand (for example from a model that
            marginalises missing entries: its rows with a NaN are normalised as
            they are).

        Returns
        -------
        ndarray of shape (n, K)
            Rows sum to one.
        """
        lp = self.log_prob(X) if log_prob is None else log_prob
        mx = lp.max(axis=1) if lp.size else np.zeros(lp.shape[0])
        far = ~(mx > _FAR_LOG_DENSITY) & np.isfinite(X).all(axis=1)
        with np.errstate(invalid="ignore"):
            post = np.exp(lp - mx[:, None])
            post /= post.sum(axis=1, keepdims=True)
        if far.any():
            from .far import far_posteriors

            post[far] = far_posteriors(self.strategy, self.means, self.precisions_cholesky,
                                       self.log_weights, X[far])
        return post

    def moments(self, X: np.ndarray, resp: np.ndarray) -> GaussianMoments:
        """Moments of ``X`` weighted by ``resp``, referenced near the means.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        resp : ndarray of shape (n, K)
            Non-negative weights (posteriors times sample weights).

        Returns
        -------
        GaussianMoments
            Referenced at the centring point (or, for directly evaluated
            components, at their means): identical for every chunk scored with
            the same parameters, so chunk statistics add exactly.
        """
        acc = self._new_acc()
        buf = self._buffer()
        for s in range(0, X.shape[0], self.block):
            xb = X[s : s + self.block]
            rt = np.ascontiguousarray(resp[s : s + self.block].T)
            self._accumulate(xb, self._features(xb, buf), rt, acc)
        return self._finish(acc)

    def mixture_e_step(
        self, X: np.ndarray, sample_weight: np.ndarray | None = None, backend: str = "auto"
    ) -> tuple[GaussianMoments, float]:
        """E-step of a Gaussian mixture in one pass: posteriors, moments, log-likelihood.

        The kernel must have been built with ``weights``.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        sample_weight : ndarray of shape (n,), optional
        backend : {"auto", "numpy", "numba"}
            ``"auto"`` runs the fused numba kernel when numba is installed and
            there are at least :data:`FUSED_MIN_ROWS` rows; ``"numpy"`` the
            reference below. Both compute the same quantities.

        Returns
        -------
        moments : GaussianMoments
            Moments weighted by posterior times sample weight.
        log_likelihood : float
            Total (weighted) log-likelihood of ``X``.
        """
        if _use_numba(backend, X.shape[0]) and self.expandable and X.shape[0]:
            return self._fused_e_step(X, sample_weight)
        acc = self._new_acc()
        buf = self._buffer()
        loglik = 0.0
        for s in range(0, X.shape[0], self.block):
            xb = X[s : s + self.block]
            F = self._features(xb, buf)
            lp = self._log_prob_block(xb, F)
            with np.errstate(divide="ignore", invalid="ignore"):
                mx = lp.max(axis=0)
                lp -= mx
                np.exp(lp, out=lp)
                tot = lp.sum(axis=0)
                lp /= tot
                lse = mx + np.log(tot)
            if sample_weight is None:
                loglik += float(lse.sum())
            else:
                wb = sample_weight[s : s + self.block]
                loglik += float(wb @ lse)
                lp *= wb
            self._accumulate(xb, F, lp, acc)
        return self._finish(acc), loglik

    def _fused_e_step(
        self, X: np.ndarray, sample_weight: np.ndarray | None
    ) -> tuple[GaussianMoments, float]:
        """:meth:`mixture_e_step` by the compiled kernel."""
        dt = self.dtype  # float32 data may be scored with float64 arithmetic, not the reverse
        if X.dtype != np.float32:
            dt = np.dtype(np.float64)
        X = np.ascontiguousarray(X, dtype=X.dtype if X.dtype == np.float32 else np.float64)
        W = np.ascontiguousarray(self.W, dtype=dt)
        has_w = sample_weight is not None
        w = np.ascontiguousarray(sample_weight, dtype=np.float64) if has_w else np.zeros(0)
        flush = EXP_FLUSH_32 if dt == np.float32 else EXP_FLUSH
        factors = self._direct_factors()
        shift = np.einsum("kd,kde->ke", self.means[self.direct] - self.direct_centres, factors)
        if dt == np.float32 and not self.fast.size and self.n_features <= DENSE_MAX_FEATURES_32:
            G = np.zeros((self.n_rows, 0))
            Gd, loglik = dense_e_step(self, X, factors, shift, w, has_w, flush)
        else:
            G, Gd, loglik = best_first_e_step(self, X, W, factors, shift, dt, w, has_w,
                                              flush)
        if np.isnan(loglik):
            # Rows so far out that the expansion overflowed (inf - inf), or invalid
            # input: the numpy path evaluates such rows directly, or reports them.
            return self.mixture_e_step(X, sample_weight, backend="numpy")
        if dt == np.float32 and self.fast.size:
            # The products used the rounded coefficients W32 = W - dW. To first order the
            # log-likelihood misses sum_i sum_k r_ik dW_k . f(x_i) = sum_k dW_k . G_k: add
            # it, so that rounding W does not shift the log-likelihood systematically.
            dW = self.W - W.astype(np.float64)
            loglik += float(np.einsum("kf,fk->", dW, G))
        acc = self._new_acc()
        acc["G"] = G
        if self.direct.size:
            # Components scored about their own means: moments referenced there.
            dr, nq, d = self.direct, self.nq, self.n_features
            acc["nk"][dr] = Gd[-1]
            acc["sum_x"][dr] = Gd[nq : nq + d].T
            acc["sum_xx"][dr] = self.kind.unpack(Gd[:nq], d)
        moments = self._finish(acc)
        if self.direct.size:
            # moments of far components are referenced at their (rounded) means
            moments.ref[self.direct] = self.direct_centres
        return moments, float(loglik)

    def _direct_factors(self) -> np.ndarray:
        """Dense factors ``M`` (Kd, d, d) of the far components: ``maha = |(x - mean) M|^2``.

        The inverse of the map that gives standard normal samples the component's
        covariance (``U`` for full and tied, ``diag(U)`` for diag and spherical), so no
        covariance type is named here.
        """
        eye = np.eye(self.n_features)
        out = np.empty((self.direct.size, self.n_features, self.n_features))
        for i, k in enumerate(self.direct):
            noise = self.strategy.sample_noise(self.precisions_cholesky, int(k), eye)
            out[i] = np.linalg.inv(noise)
        return out
