"""The ``fit`` and ``select`` commands."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np

from emframe.interfaces.cli.cluster import connect, load_on_cluster, on_cluster, to_cluster
from emframe.interfaces.cli.running import (
    Progress,
    _model_metadata,
    _with_lengths,
    check_lags,
    fit_estimator,
    make_estimator,
    plot_fit,
    summary,
)
from emframe.interfaces.cli.specs import MODELS, InputError, plural
from emframe.interfaces.cli.tables import (
    Data,
    check_output,
    check_values,
    drop_missing_rows,
    load_data,
    resolve_input,
    save_figure,
)


def cmd_fit(args: argparse.Namespace) -> int:
    """``emframe fit``: fit a model; print its summary, save it and its plot."""
    args.data = resolve_input(args.data)
    spec = MODELS[args.model]
    if args.lengths is not None and not spec.sequential:
        raise InputError(f"--lengths applies to HMMs and ssm, not to {spec.name}")
    check_output(args.out, [args.data, args.lengths])
    check_output(args.plot, [args.data, args.lengths, args.out])
    cluster = on_cluster(args)
    if not cluster and args.partition_rows is not None:
        raise InputError("--partition-rows applies with --scheduler or --local-cluster")
    if cluster and args.plot is not None:
        raise InputError("--plot draws the data in this process; leave it out when fitting "
                         "on a cluster (--scheduler, --local-cluster)")
    with connect(args):  # the cluster's client is the default one while the command runs
        if cluster:
            data = load_on_cluster(args.data, args.columns, args.lengths, args.partition_rows)
        else:
            data = load_data(args.data, args.columns, args.lengths)
        lazy = not isinstance(data.X, np.ndarray)
        if args.drop_missing:
            if lazy:
                raise InputError("--drop-missing needs the data in memory; with a .npy file "
                                 "on a cluster, drop the rows before saving it")
            data = drop_missing_rows(data)
        if lazy:  # the values are checked by the estimator, partition by partition
            if spec.one_column and data.X.shape[1] != 1:
                raise InputError(f"{spec.name} models one column of symbols, but "
                                 f"{data.X.shape[1]} columns were chosen; pick one with --columns")
        else:
            check_values(data, spec, n_components=args.components or 2)
        _check_components(args.components, data)
        est = make_estimator(spec, args, data=data)
        check_lags(est, data)
        if cluster:
            data = to_cluster(data, args.partition_rows)
        fit_estimator(est, spec, data, Progress(args.quiet))
        # the files first: a reader that closes stdout early (| head) must not cost them
        if args.out is not None:
            est.save(args.out, metadata=_model_metadata(spec, data))
        if args.plot is not None:
            save_figure(plot_fit(est, spec, data), args.plot)
        text = summary(est, spec, data)  # scores on the cluster's data are reduced there
    print(text)
    if args.out is not None:
        print(f"saved model   {args.out}")
    if args.plot is not None:
        print(f"saved plot    {args.plot}")
    return 0


def _check_components(k: int | None, data: Data) -> None:
    if k is not None and k > data.X.shape[0]:
        raise InputError(f"--components {k} is more than the "
                         f"{plural(data.X.shape[0], 'row')} of {data.table.path}")


# -- predict / decode --------------------------------------------------------------------------
def parse_range(text: str) -> list[int]:
    """'1-8' or '2,3,5' (or a mix, '1-3,6') as a sorted list of positive ints."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid component range {text!r}; write it like 1-8 or 2,3,5") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"component counts must be positive, got {text!r}")
    return sorted(out)


def cmd_select(args: argparse.Namespace) -> int:
    """``emframe select``: fit each number of components, keep the best by BIC/AIC."""
    spec = MODELS[args.model]
    if spec.kind == "gaussian":
        raise InputError(f"{spec.name} has no components to select")
    if spec.kind == "ssm":
        raise InputError(
            "select chooses the number of components of a mixture or an HMM; ssm has a state "
            "dimension instead, and the BIC of 'fit ssm' is no guide to it: its parameter "
            "count includes the m*m directions in which a change of state coordinates leaves "
            "the likelihood unchanged, so it would favour small state dimensions. Fit each "
            "dimension ('emframe fit ssm DATA --state-dim M') and compare their "
            "log-likelihoods and forecasts")
    args.data = resolve_input(args.data)
    if args.lengths is not None and spec.kind != "hmm":
        raise InputError(f"--lengths applies to HMMs, not to {spec.name}")
    check_output(args.out, [args.data, args.lengths])
    data = load_data(args.data, args.columns, args.lengths)
    if args.drop_missing:
        data = drop_missing_rows(data)
    check_values(data, spec, n_components=max(args.components))
    _check_components(max(args.components), data)
    cov_types = [None] if args.covariance_type is None else args.covariance_type.split(",")
    results = []
    for cov in cov_types:
        for k in args.components:
            est = make_estimator(spec, args, n_components=k, covariance_type=cov)
            check_lags(est, data)
            label = f"[k={k}{'' if cov is None else ' ' + cov}] "
            fit_estimator(est, spec, data, Progress(args.quiet, label=label))
            ll = float(_with_lengths(est.log_likelihood, spec, data))
            bic = float(_with_lengths(est.bic, spec, data))
            aic = float(_with_lengths(est.aic, spec, data))
            results.append((k, cov, ll, est.n_parameters(), bic, aic, est.converged_, est))
    _warn_nested_fits_worse(results, args.n_init)
    crit = 4 if args.criterion == "bic" else 5
    best = min(range(len(results)), key=lambda r: results[r][crit])
    best_k, best_cov, *_rest, best_est = results[best]
    if args.out is not None:  # before printing: see cmd_fit
        best_est.save(args.out, metadata=_model_metadata(spec, data))
    cov_col = args.covariance_type is not None
    head = f"{'components':>10}" + (f"  {'covariance':>10}" if cov_col else "")
    print(head + f"  {'log-likelihood':>15}  {'parameters':>10}  {'BIC':>12}  {'AIC':>12}"
          "  converged")
    for r, (k, cov, ll, npar, bic, aic, conv, _) in enumerate(results):
        mark = "  *" if r == best else ""
        print(f"{k:>10}" + (f"  {cov:>10}" if cov_col else "")
              + f"  {ll:>15.4f}  {npar:>10}  {bic:>12.4f}  {aic:>12.4f}  {str(conv):>9}{mark}")
    print(f"best by {args.criterion.upper()}: {plural(best_k, 'component')}"
          + ("" if best_cov is None else f", covariance_type {best_cov}"))
    print()
    print(summary(best_est, spec, data))
    if args.out is not None:
        print(f"saved model   {args.out}")
    return 0


#: Restarts per fit in ``select``: one start can end at a poor local maximum, which
#: distorts a comparison of models more than it distorts a single fit.
SELECT_N_INIT = 5


def _warn_nested_fits_worse(results: list[tuple[Any, ...]], n_init: int) -> None:
    """Warn when a model with more components fits worse than a smaller one it contains.

    A mixture (or HMM) with k components is a special case of one with more (give the
    extra components zero weight), so its maximum likelihood is never higher: when the
    larger fit is lower, EM stopped at a poor local maximum there.
    """
    by_cov: dict[Any, list[tuple[int, float]]] = {}
    for k, cov, ll, *_ in results:
        by_cov.setdefault(cov, []).append((k, ll))
    for cov, fits in by_cov.items():
        fits.sort()
        for i, (k_big, ll_big) in enumerate(fits):
            worse = [(k, ll) for k, ll in fits[:i] if ll - ll_big > 1e-6 * max(1.0, abs(ll))]
            if worse:
                k_small, ll_small = max(worse, key=lambda f: f[1])
                what = "" if cov is None else f" {cov}"
                warnings.warn(
                    f"the{what} model with {k_big} components fits worse (log-likelihood "
                    f"{ll_big:.4f}) than the one with {k_small} ({ll_small:.4f}), although it "
                    "contains it: EM stopped at a poor local maximum, so its BIC/AIC are too "
                    f"high; use more restarts (--n-init, now {n_init}) or a different --seed",
                    UserWarning, stacklevel=2,
                )


# -- segment ---------------------------------------------------------------------------------------
