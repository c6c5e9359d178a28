"""The ``fit`` and ``select`` commands."""

from __future__ import annotations

import argparse

from emframe.interfaces.cli.running import (
    Progress,
    _model_metadata,
    _with_lengths,
    fit_estimator,
    make_estimator,
    plot_fit,
    summary,
)
from emframe.interfaces.cli.specs import MODELS, InputError
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
    args.data = resolve_input(args.data)
    spec = MODELS[args.model]
    if args.lengths is not None and spec.kind != "hmm":
        raise InputError(f"--lengths applies to HMMs, not to {spec.name}")
    check_output(args.out, [args.data, args.lengths])
    check_output(args.plot, [args.data, args.lengths, args.out])
    data = load_data(args.data, args.columns, args.lengths)
    if args.drop_missing:
        data = drop_missing_rows(data)
    check_values(data, spec)
    _check_components(args.components, data)
    est = make_estimator(spec, args)
    fit_estimator(est, spec, data, Progress(args.quiet))
    print(summary(est, spec, data))
    if args.out is not None:
        est.save(args.out, metadata=_model_metadata(spec, data))
        print(f"saved model   {args.out}")
    if args.plot is not None:
        fig = plot_fit(est, spec, data)
        save_figure(fig, args.plot)
        print(f"saved plot    {args.plot}")
    return 0


def _check_components(k: int | None, data: Data) -> None:
    if k is not None and k > data.X.shape[0]:
        raise InputError(f"--components {k} is more than the {data.X.shape[0]} rows of "
                         f"{data.table.path}")


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
    args.data = resolve_input(args.data)
    spec = MODELS[args.model]
    if spec.kind == "gaussian":
        raise InputError(f"{spec.name} has no components to select")
    if args.lengths is not None and spec.kind != "hmm":
        raise InputError(f"--lengths applies to HMMs, not to {spec.name}")
    check_output(args.out, [args.data, args.lengths])
    data = load_data(args.data, args.columns, args.lengths)
    if args.drop_missing:
        data = drop_missing_rows(data)
    check_values(data, spec)
    _check_components(max(args.components), data)
    cov_types = [None] if args.covariance_type is None else args.covariance_type.split(",")
    results = []
    for cov in cov_types:
        for k in args.components:
            est = make_estimator(spec, args, n_components=k, covariance_type=cov)
            label = f"[k={k}{'' if cov is None else ' ' + cov}] "
            fit_estimator(est, spec, data, Progress(args.quiet, label=label))
            ll = float(_with_lengths(est.log_likelihood, spec, data))
            bic = float(_with_lengths(est.bic, spec, data))
            aic = float(_with_lengths(est.aic, spec, data))
            results.append((k, cov, ll, est.n_parameters(), bic, aic, est.converged_, est))
    crit = 4 if args.criterion == "bic" else 5
    best = min(range(len(results)), key=lambda r: results[r][crit])
    cov_col = args.covariance_type is not None
    head = f"{'components':>10}" + (f"  {'covariance':>10}" if cov_col else "")
    print(head + f"  {'log-likelihood':>15}  {'parameters':>10}  {'BIC':>12}  {'AIC':>12}"
          "  converged")
    for r, (k, cov, ll, npar, bic, aic, conv, _) in enumerate(results):
        mark = "  *" if r == best else ""
        print(f"{k:>10}" + (f"  {cov:>10}" if cov_col else "")
              + f"  {ll:>15.4f}  {npar:>10}  {bic:>12.4f}  {aic:>12.4f}  {str(conv):>9}{mark}")
    k, cov, *_rest, best_est = results[best]
    print(f"best by {args.criterion.upper()}: {k} components"
          + ("" if cov is None else f", covariance_type {cov}"))
    print()
    print(summary(best_est, spec, data))
    if args.out is not None:
        best_est.save(args.out, metadata=_model_metadata(spec, data))
        print(f"saved model   {args.out}")
    return 0


# -- segment ---------------------------------------------------------------------------------------
