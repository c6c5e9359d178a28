"""Plots of fitted models: convergence, clusters, HMM state paths, Bernoulli components,
smoothed states of state-space models.

matplotlib is an optional dependency (``pip install "emframe[plot]"``); it is
imported only when a plotting function is called. Every function draws on the
``ax`` (or ``fig``) it is given, or on a new figure, and returns what it drew
on, so the plot can be adjusted or saved by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_INSTALL_HINT = 'pip install "emframe[plot]"'


def _pyplot() -> Any:
    """Import matplotlib.pyplot, or explain how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "emframe.interfaces.plotting needs matplotlib, which is not installed; "
            f"install it with: {_INSTALL_HINT}"
        ) from exc
    return plt


def _new_axes(ax: Axes | None, **subplot_kw: Any) -> Axes:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(**subplot_kw)
    return ax


def _history(source: Any) -> np.ndarray:
    for name in ("loglik_history_", "loglik_history"):
        if hasattr(source, name):
            return np.asarray(getattr(source, name), dtype=float)
    h = np.asarray(source, dtype=float)
    if h.ndim != 1 or h.size == 0:
        raise ValueError(
            "plot_convergence needs a fitted estimator, a FitResult or a 1-D array of "
            f"log-likelihoods; got an array of shape {h.shape}"
        )
    return h


def plot_convergence(source: Any, *, ax: Axes | None = None, label: str | None = None) -> Axes:
    """The log-likelihood after each EM iteration.

    Parameters
    ----------
    source : EMEstimator, FitResult or array-like of shape (n_iter + 1,)
        A fitted estimator (its ``loglik_history_``), a :class:`~emframe.FitResult`
        or the history itself; entry 0 is at the initial parameters.
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure by default.
    label : str, optional
        Legend label of the line (for comparing several fits on one axes).

    Returns
    -------
    matplotlib.axes.Axes
        The axes; its last line holds the history (x = iteration 0..n_iter).
    """
    history = _history(source)
    ax = _new_axes(ax)
    ax.plot(np.arange(history.size), history, marker="o", markersize=3, label=label)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("log-likelihood")
    converged = getattr(source, "converged_", getattr(source, "converged", None))
    if converged is not None:
        state = "converged" if converged else "not converged"
        ax.set_title(f"{state} after {history.size - 1} iterations")
    if label is not None:
        ax.legend()
    return ax


# -- clusters ------------------------------------------------------------------------------
def _component_covariances(estimator: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(means (K, d), covariances (K, d, d))`` of a Gaussian mixture-like estimator."""
    if hasattr(estimator, "mean_") and hasattr(estimator, "covariance_"):
        return np.asarray(estimator.mean_)[None], np.asarray(estimator.covariance_)[None]
    if not hasattr(estimator, "means_"):
        raise TypeError(
            f"{type(estimator).__name__} has no fitted means_; plot_clusters needs a fitted "
            "Gaussian model (means_ and covariances_ with covariance_type)"
        )
    means = np.asarray(estimator.means_, dtype=float)
    k, d = means.shape
    cov = getattr(estimator, "covariances_", None)
    if cov is None:
        cov = getattr(estimator, "covars_", None)
    if cov is None:
        raise TypeError(f"{type(estimator).__name__} has no covariances_ to draw ellipses from")
    cov = np.asarray(cov, dtype=float)
    kind = getattr(estimator, "covariance_type", "full")
    if kind == "full" or cov.shape == (k, d, d):
        full = cov
    elif kind == "tied":
        full = np.broadcast_to(cov, (k, d, d))
    elif kind == "diag":
        full = np.stack([np.diag(c) for c in cov])
    elif kind == "spherical":
        full = cov.reshape(k, 1, 1) * np.eye(d)
    else:
        raise ValueError(f"unknown covariance_type {kind!r}")
    return means, np.asarray(full)


def ellipse_geometry(cov2: np.ndarray, n_std: float) -> tuple[float, float, float]:
    """Width, height and angle (degrees) of the ``n_std`` contour of a 2×2 covariance.

    Parameters
    ----------
    cov2 : ndarray of shape (2, 2)
    n_std : float
        Mahalanobis radius of the contour.

    Returns
    -------
    width, height, angle : float
        Full axis lengths along the major and minor directions, and the angle
        of the major axis from the x axis.
    """
    vals, vecs = np.linalg.eigh(cov2)
    vals = np.clip(vals, 0.0, None)
    major = vecs[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    return 2 * n_std * float(np.sqrt(vals[1])), 2 * n_std * float(np.sqrt(vals[0])), angle


def plot_clusters(
    estimator: Any,
    X: Any,
    *,
    dims: tuple[int, int] = (0, 1),
    n_std: float = 2.0,
    ax: Axes | None = None,
    feature_names: tuple[str, str] | None = None,
) -> Axes:
    """2-D scatter of the data coloured by component, with each component's ellipse.

    Parameters
    ----------
    estimator : fitted Gaussian mixture-like estimator
        Needs ``means_`` (n_components, n_features) and ``covariances_`` laid out
        by ``covariance_type`` (``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``),
        and ``predict`` for the colours (label -1, noise, is grey). A single
        Gaussian with ``mean_`` and ``covariance_`` (MissingDataGaussian) gets one
        ellipse and one colour.
    X : array-like of shape (n_samples, n_features)
    dims : pair of int
        The two features to plot.
    n_std : float
        Each ellipse is the contour at this Mahalanobis distance from the mean.
    ax : matplotlib Axes, optional
    feature_names : pair of str, optional
        Axis labels.

    Returns
    -------
    matplotlib.axes.Axes
        Holds one scatter collection of the data, one ``Ellipse`` patch per
        component and the means as ``x`` markers.
    """
    from matplotlib.patches import Ellipse

    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] < 2:
        raise ValueError(f"plot_clusters needs X of shape (n_samples, >= 2), got {X.shape}")
    i, j = (int(dims[0]), int(dims[1]))
    if not (0 <= i < X.shape[1] and 0 <= j < X.shape[1]) or i == j:
        raise ValueError(f"dims must be two different feature indices below {X.shape[1]}, "
                         f"got {dims}")
    means, covs = _component_covariances(estimator)
    k = means.shape[0]
    if hasattr(estimator, "predict") and k > 1:
        labels = np.asarray(estimator.predict(X))
    else:
        labels = np.zeros(X.shape[0], dtype=int)
    ax = _new_axes(ax)
    cmap = _pyplot().get_cmap("tab10" if k <= 10 else "tab20")
    colors = [cmap(c % cmap.N) for c in range(k)]
    ok = ~np.isnan(X[:, [i, j]]).any(axis=1)
    noise = (0.55, 0.55, 0.55, 1.0)  # label -1: a mixture's noise component
    ax.scatter(X[ok, i], X[ok, j], c=[colors[c] if c >= 0 else noise for c in labels[ok]],
               s=12, alpha=0.7, linewidths=0)
    sub = np.ix_([i, j], [i, j])
    for c in range(k):
        width, height, angle = ellipse_geometry(covs[c][sub], n_std)
        ax.add_patch(Ellipse(means[c, [i, j]], width, height, angle=angle, fill=False,
                             edgecolor=colors[c], linewidth=2))
    ax.plot(means[:, i], means[:, j], linestyle="none", marker="x", color="k", markersize=9,
            markeredgewidth=2)
    names = feature_names or (f"feature {i}", f"feature {j}")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.autoscale_view()
    return ax


# -- HMM state paths -----------------------------------------------------------------------
def _state_levels(estimator: Any, feature: int) -> np.ndarray | None:
    """The mean of ``feature`` in each state, when the emission model has one."""
    for name in ("means_", "lambdas_", "rates_"):
        value = getattr(estimator, name, None) if estimator is not None else None
        if value is not None:
            arr = np.asarray(value, dtype=float)
            return arr[:, feature] if arr.ndim == 2 else arr
    return None


def plot_state_path(
    estimator: Any,
    X: Any,
    *,
    lengths: Any = None,
    states: Any = None,
    feature: int = 0,
    x: Any = None,
    fig: Figure | None = None,
) -> Figure:
    """A series with its most likely hidden states.

    The top panel draws the series and, when the emission model has state means
    (``means_`` or Poisson ``lambdas_``), the mean of the current state as a step
    line; the bottom panel draws the state index. Sequence boundaries (from
    ``lengths``) are dashed vertical lines.

    Parameters
    ----------
    estimator : fitted HMM estimator or None
        Decodes the states (``predict(X, lengths)``) unless ``states`` is given.
    X : array-like of shape (n_samples, n_features) or (n_samples,)
    lengths : array-like of int, optional
        Lengths of the concatenated sequences.
    states : array-like of int, shape (n_samples,), optional
        A state path to draw instead of decoding one.
    feature : int
        The column of ``X`` to draw.
    x : array-like of shape (n_samples,), optional
        Positions on the horizontal axis (for example years); default 0..n-1.
    fig : matplotlib Figure, optional
        Figure to draw on (it must be empty); a new one by default.

    Returns
    -------
    matplotlib.figure.Figure
        With two axes: ``fig.axes[0]`` holds the series as its first line (and
        the state means as its second), ``fig.axes[1]`` the state path.
    """
    X = np.asarray(X)
    X2 = X.reshape(-1, 1) if X.ndim == 1 else X
    if states is None:
        if estimator is None:
            raise ValueError("give a fitted estimator or the states to draw")
        states = estimator.predict(X2, lengths)
    states = np.asarray(states)
    n = X2.shape[0]
    if states.shape != (n,):
        raise ValueError(f"states must have shape ({n},) to match X, got {states.shape}")
    xs = np.arange(n) if x is None else np.asarray(x)
    if xs.shape != (n,):
        raise ValueError(f"x must have shape ({n},) to match X, got {xs.shape}")
    plt = _pyplot()
    if fig is None:
        fig = plt.figure(figsize=(8, 4.5))
    ax0, ax1 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    series = X2[:, feature].astype(float)
    ax0.plot(xs, series, color="0.2", linewidth=1, marker=".", markersize=4, label="data")
    levels = _state_levels(estimator, feature)
    if levels is not None:
        ax0.step(xs, levels[states], where="mid", color="C3", linewidth=2,
                 label="mean of the state")
        ax0.legend(loc="best", fontsize="small")
    ax0.set_ylabel(f"feature {feature}" if X2.shape[1] > 1 else "value")
    ax1.step(xs, states, where="mid", color="C0")
    k = int(states.max()) + 1 if states.size else 1
    ax1.set_yticks(range(k))
    ax1.set_ylabel("state")
    ax1.set_xlabel("time" if x is None else "")
    if lengths is not None:
        ends = np.cumsum(np.asarray(lengths, dtype=int))[:-1]
        for e in ends:
            for a in (ax0, ax1):
                a.axvline((xs[e - 1] + xs[e]) / 2, color="0.5", linestyle="--", linewidth=1)
    return fig


# -- Bernoulli components ------------------------------------------------------------------
def plot_bernoulli_components(
    source: Any,
    *,
    image_shape: tuple[int, int] | None = None,
    weights: Any = None,
    ncols: int | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Each component's success probabilities drawn as an image.

    Parameters
    ----------
    source : fitted BernoulliMixture or array-like of shape (n_components, n_features)
        The estimator (its ``probs_`` and ``weights_``) or the probabilities.
    image_shape : pair of int, optional
        Shape of one image; by default square when ``n_features`` is a square
        (8×8 for the digits), else one row.
    weights : array-like of shape (n_components,), optional
        Mixing weights shown in the titles (taken from the estimator by default).
    ncols : int, optional
        Images per row; default up to 5.
    fig : matplotlib Figure, optional
        An empty figure to draw on; a new one by default.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per component, in component order, each holding one image with
        values in [0, 1] (white 0, black 1).
    """
    if hasattr(source, "probs_"):
        probs = np.asarray(source.probs_, dtype=float)
        if weights is None:
            weights = getattr(source, "weights_", None)
    else:
        probs = np.asarray(source, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must have shape (n_components, n_features), "
                         f"got {probs.shape}")
    k, d = probs.shape
    if image_shape is None:
        side = int(round(np.sqrt(d)))
        image_shape = (side, side) if side * side == d else (1, d)
    if int(np.prod(image_shape)) != d:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold {d} features")
    ncols = min(k, 5) if ncols is None else int(ncols)
    nrows = -(-k // ncols)
    plt = _pyplot()
    if fig is None:
        fig = plt.figure(figsize=(1.8 * ncols, 2.0 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for c, ax in enumerate(axes):
        if c >= k:
            fig.delaxes(ax)
            continue
        ax.imshow(probs[c].reshape(image_shape), cmap="gray_r", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        title = f"{c}" if weights is None else f"{c}: w={float(np.asarray(weights)[c]):.2f}"
        ax.set_title(title, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


# -- state-space models ----------------------------------------------------------------------
def plot_smoothed_states(
    estimator: Any,
    Y: Any,
    lengths: Any = None,
    *,
    signal: bool = False,
    components: Any = None,
    x: Any = None,
    n_std: float = 2.0,
    fig: Figure | None = None,
) -> Figure:
    """Smoothed states of a state-space model with ``± n_std`` standard-deviation bands.

    Parameters
    ----------
    estimator : fitted LinearGaussianSSM
        Anything with ``smooth(Y, lengths) -> (means, covs)`` and, for ``signal``,
        ``observation_matrix_`` and ``observation_offset_``.
    Y : array-like of shape (n_steps, n_obs) or (n_steps,)
        Observations (NaN for missing).
    lengths : array-like of int, optional
        Lengths of the concatenated sequences; their boundaries are dashed lines.
    signal : bool, default False
        Draw the smoothed signal ``C x_t + d`` of each observed variable, on the data's
        scale and with the data as dots, instead of the state coordinates. For a
        local-level model (``C = 1``, ``d = 0``) the signal is the level itself.
    components : sequence of int, optional
        The state coordinates (or, with ``signal``, the observed columns) to draw, one
        axes each; default all.
    x : array-like of shape (n_steps,), optional
        Positions on the horizontal axis (for example years); default 0..n-1.
    n_std : float, default 2.0
        Half-width of the band in smoothed standard deviations.
    fig : matplotlib Figure, optional
        An empty figure to draw on; a new one by default.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per component: its first line is the smoothed mean, its first
        collection the band (``mean ± n_std·sd``); with ``signal``, the data are its
        second line.
    """
    Y = np.asarray(Y, dtype=float)
    Y2 = Y.reshape(-1, 1) if Y.ndim == 1 else Y
    means, covs = estimator.smooth(Y2, lengths)
    if signal:
        C = np.asarray(estimator.observation_matrix_, dtype=float)
        means = means @ C.T + np.asarray(estimator.observation_offset_, dtype=float)
        covs = C @ covs @ C.T
    n, k = means.shape
    what = "observed column" if signal else "state"
    idx = list(range(k)) if components is None else [int(i) for i in np.atleast_1d(components)]
    if not idx or any(not 0 <= i < k for i in idx):
        raise ValueError(f"components must be {what} indices in 0..{k - 1}, got {components!r}")
    xs = np.arange(n) if x is None else np.asarray(x)
    if xs.shape != (n,):
        raise ValueError(f"x must have shape ({n},) to match Y, got {xs.shape}")
    sd = np.sqrt(np.maximum(np.diagonal(covs, axis1=1, axis2=2), 0.0))
    plt = _pyplot()
    if fig is None:
        fig = plt.figure(figsize=(8, 2.2 + 1.6 * len(idx)))
    axes = np.atleast_1d(fig.subplots(len(idx), 1, sharex=True, squeeze=False).ravel())
    for ax, i in zip(axes, idx, strict=True):
        ax.plot(xs, means[:, i], color="C0", linewidth=1.8,
                label="smoothed signal" if signal else "smoothed state")
        ax.fill_between(xs, means[:, i] - n_std * sd[:, i], means[:, i] + n_std * sd[:, i],
                        color="C0", alpha=0.25, linewidth=0, label=f"± {n_std:g} sd")
        if signal:
            ax.plot(xs, Y2[:, i], color="0.2", linestyle="none", marker=".", markersize=4,
                    label="data")
        ax.set_ylabel(f"{'column' if signal else 'state'} {i}")
        if lengths is not None:
            for e in np.cumsum(np.asarray(lengths, dtype=int))[:-1]:
                ax.axvline((xs[e - 1] + xs[e]) / 2, color="0.5", linestyle="--", linewidth=1)
    axes[0].legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("time" if x is None else "")
    return fig
