"""Fast E-step of mixtures of independent Bernoulli variables, by lookup tables.

An entry of binary data is 0 or 1, or missing. Writing a group of entries as one
number (base 2 without missing entries: 8 entries per byte; base 3 with them, the
states missing, 0, 1: 5 entries per byte, 3**5 = 243 codes), the log-likelihood
contribution of a group to a component is one of at most 256 numbers. A row's
log-likelihoods are then ``ceil(d / 8)`` (or ``ceil(d / 5)``) table lookups and
additions per component instead of ``d`` multiply-adds, and its statistics are as many
additions of its posteriors into a (group, code, component) histogram, from which the
per-feature counts follow at the end.

:func:`encode` builds the codes (once per fit); :func:`lookup_tables` the tables (once
per E-step); the compiled kernel (``emframe.inference._binary_numba``, with numba from
``pip install "emframe[fast]"``) does the pass over the rows; :func:`counts_from_histogram`
turns the histogram into the statistics.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = [
    "cached_codes",
    "carry_codes",
    "counts_from_histogram",
    "encode",
    "group_size",
    "lookup_tables",
    "table_e_step",
]


def group_size(base: int) -> int:
    """Entries per code: 8 in base 2, 5 in base 3 (one byte either way)."""
    return {2: 8, 3: 5}[base]


@functools.lru_cache(maxsize=2)
def _digits(base: int) -> np.ndarray:
    """(base**group, group) digits of every code, least significant first."""
    size = group_size(base)
    codes = np.arange(base**size)
    out = np.stack([(codes // base**t) % base for t in range(size)], axis=1)
    out.flags.writeable = False
    return out


def encode(ones: np.ndarray, observed: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Codes of groups of entries, uint8, shape (n, n_groups), and their base.

    Base 2 (digit = the entry) when ``observed`` is None, else base 3 (digit =
    ``ones + observed``: 0 missing, 1 observed 0, 2 observed 1).

    Parameters
    ----------
    ones : ndarray of shape (n, d)
        1.0 where observed and 1, else 0.0.
    observed : ndarray of shape (n, d) or None
        1.0 where observed; None when nothing is missing.
    """
    n, d = ones.shape
    base = 2 if observed is None else 3
    size = group_size(base)
    G = -(-d // size)
    weights = np.zeros((d, G), dtype=np.float64)  # entry -> its place in its group's code
    for f in range(d):
        weights[f, f // size] = base ** (f % size)
    out = np.empty((n, G), dtype=np.uint8)
    step = 65_536
    for s in range(0, n, step):
        state = np.asarray(ones[s : s + step], dtype=np.float64)
        if observed is not None:
            state = state + observed[s : s + step]
        out[s : s + state.shape[0]] = state @ weights  # small integers, exact
    return out, base


def lookup_tables(log_p: np.ndarray, log_q: np.ndarray, base: int) -> np.ndarray:
    """Tables (n_groups, n_codes, K): each group code's log-likelihood under each component.

    Parameters
    ----------
    log_p, log_q : ndarrays of shape (K, d)
        ``log p`` and ``log (1 - p)`` (``-inf`` allowed: sums of them, never products).
    base : {2, 3}
    """
    K, d = log_p.shape
    size = group_size(base)
    G = -(-d // size)
    # value of each digit: base 2: (log q, log p); base 3: (0 for missing, log q, log p)
    vals = np.zeros((K, G * size, base))
    vals[:, :d, base - 2] = log_q
    vals[:, :d, base - 1] = log_p
    if base == 2:
        vals[:, d:, :] = 0.0  # padding entries contribute nothing whatever their digit
    vals = vals.reshape(K, G, size, base)
    digits = _digits(base)
    tables = np.zeros((G, base**size, K))
    for t in range(size):
        tables += np.moveaxis(vals[:, :, t, :][:, :, digits[:, t]], 0, -1)
    return np.ascontiguousarray(tables)


def counts_from_histogram(hist: np.ndarray, d: int, base: int) -> tuple[np.ndarray, np.ndarray]:
    """``ones`` and ``observed`` statistics (K, d) from the (n_groups, n_codes, K) histogram."""
    digits = _digits(base)
    is_one = (digits == base - 1).astype(np.float64)  # (n_codes, size)
    is_obs = (digits >= base - 2).astype(np.float64)
    K = hist.shape[2]
    ones = np.einsum("gck,ct->kgt", hist, is_one).reshape(K, -1)[:, :d]
    observed = np.einsum("gck,ct->kgt", hist, is_obs).reshape(K, -1)[:, :d]
    return np.ascontiguousarray(ones), np.ascontiguousarray(observed)


def cached_codes(data: Any) -> tuple[np.ndarray, int]:
    """:func:`encode` of ``data`` (with ``ones`` and ``observed`` arrays), built on first
    use and kept on the object (also a frozen dataclass's); see :func:`carry_codes`."""
    codes = data.__dict__.get("_codes")
    if codes is None:
        codes = encode(data.ones, data.observed)
        codes[0].flags.writeable = False
        object.__setattr__(data, "_codes", codes)
    return codes


def carry_codes(parent: Any, child: Any, rows: Any) -> Any:
    """``child`` (``parent``'s ``rows``) with the matching slice of ``parent``'s codes, if any."""
    codes = parent.__dict__.get("_codes")
    if codes is not None:
        object.__setattr__(child, "_codes", (codes[0][rows], codes[1]))
    return child


def table_e_step(
    data: Any, probs: np.ndarray, weights: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """E-step of a Bernoulli mixture by lookup tables, in one compiled pass (numba).

    Parameters
    ----------
    data : object with ``ones`` (n, d) and ``observed`` ((n, d) or None) arrays
        Its codes are built on first use and kept (:func:`cached_codes`).
    probs : ndarray of shape (K, d)
    weights : ndarray of shape (K,)
    sample_weight : ndarray of shape (n,), optional

    Returns
    -------
    (nk, ones, observed, log_likelihood), or None when a row is impossible under every
    component (the caller's general path reports it). Without missing entries
    ``observed`` is ``nk`` for every feature, exactly.
    """
    codes, base = cached_codes(data)
    d = data.ones.shape[1]
    from emframe.inference._binary_numba import mixture_e_step
    from emframe.inference.compiled import call_interruptible

    p = np.asarray(probs, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    with np.errstate(divide="ignore"):
        tables = lookup_tables(np.log(p), np.log1p(-p), base)
        log_w = np.log(w)
    has_w = sample_weight is not None
    sw = np.ascontiguousarray(sample_weight, dtype=np.float64) if has_w else np.zeros(0)
    hist, nk, loglik, impossible = call_interruptible(
        mixture_e_step, codes, tables, log_w, sw, has_w
    )
    if impossible:
        return None
    ones, observed = counts_from_histogram(hist, d, base)
    if data.observed is None:
        observed = np.repeat(nk[:, None], d, axis=1)
    return nk, ones, observed, float(loglik)
