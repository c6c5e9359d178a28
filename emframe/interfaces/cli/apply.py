"""Commands that apply a saved model: ``predict``, ``decode``, ``impute`` and ``smooth``."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import numpy as np

from emframe.interfaces.cli.running import (
    Progress,
    _with_lengths,
    check_lags,
    fit_estimator,
    state_rows,
)
from emframe.interfaces.cli.specs import MODELS, InputError, _spec_of, plural
from emframe.interfaces.cli.tables import (
    Data,
    _fmt,
    check_output,
    check_values,
    load_data,
    resolve_input,
    write_csv,
)
from emframe.interfaces.io import load, read_metadata


def _load_model(path: str) -> tuple[Any, dict[str, Any]]:
    try:
        est = load(path)
        meta = read_metadata(path)["metadata"] or {}
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None
    if not hasattr(est, "params_"):
        raise InputError(f"{path}: the saved model is not fitted")
    return est, meta


def _data_for_model(args: argparse.Namespace, est: Any, meta: dict[str, Any]) -> Data:
    spec = _spec_of(est)
    lengths = getattr(args, "lengths", None)
    if lengths is not None and (spec is None or not spec.sequential):
        raise InputError("--lengths applies to HMMs and ssm only")
    data = load_data(args.data, args.columns, lengths, default_columns=meta.get("columns"),
                     lengths_column=meta.get("lengths_column")
                     if spec is not None and spec.sequential else None)
    d = getattr(est, "n_features_in_", data.X.shape[1])
    if data.X.shape[1] != d:
        raise InputError(
            f"{args.data}: {plural(data.X.shape[1], 'column')} chosen ({data.names}), but the "
            f"model was fitted on {d} ({meta.get('columns', '?')}); choose them with --columns"
        )
    if spec is not None:
        check_values(data, spec)
    check_lags(est, data)
    return data


def _model_and_data(args: argparse.Namespace, method: str, refusal: str) -> tuple[Any, Data]:
    """The saved model of ``args.model_file`` and the data of ``args.data`` to apply it to.

    Parameters
    ----------
    args : argparse.Namespace
        The command's arguments (``data``, ``out``, ``model_file``, ``lengths``, ``columns``).
    method : str
        The estimator method the command needs.
    refusal : str
        Completes "a <class> ..." in the error for a model without ``method``.

    Returns
    -------
    estimator, Data

    Raises
    ------
    InputError
        For a bad file, a model without ``method`` or data that do not fit it.
    """
    args.data = resolve_input(args.data)
    check_output(args.out, [args.model_file, args.data, args.lengths])
    est, meta = _load_model(args.model_file)
    if not hasattr(est, method):
        raise InputError(f"{args.model_file}: a {type(est).__name__} {refusal}")
    return est, _data_for_model(args, est, meta)


def _write_steps(path: str, header: list[str], rows: Any, lengths: np.ndarray | None) -> None:
    """Write one CSV line per step, led by a ``sequence`` column when there are several."""
    if lengths is not None and len(lengths) > 1:
        seq = np.repeat(np.arange(len(lengths)), lengths)
        write_csv(path, ["sequence", *header],
                  ([int(q), *row] for q, row in zip(seq, rows, strict=True)))
    else:
        write_csv(path, header, rows)


def _aligned(values: np.ndarray, rows: np.ndarray | None) -> list[Any]:
    """One entry per input row: ``values`` at the rows with a state, None at the lags."""
    if rows is None:
        return list(values)
    out: list[Any] = [None] * rows.shape[0]
    for i, v in zip(np.flatnonzero(rows), values, strict=True):
        out[i] = v
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    """``emframe predict``: labels and probabilities under a saved model."""
    est, data = _model_and_data(args, "predict_proba", "has no labels to predict; use "
                                "'emframe impute' for missing data")
    spec = _spec_of(est)
    labels = np.asarray(_with_lengths(est.predict, spec, data))
    proba = np.asarray(_with_lengths(est.predict_proba, spec, data))
    name = "state" if spec is not None and spec.kind == "hmm" else "label"
    header = [name] + [f"p{k}" for k in range(proba.shape[1])]
    # one line per input row; the lags of an autoregressive HMM have no state: empty cells
    empty = [""] * len(header)
    state_at = state_rows(est, data)
    rows = (empty if lab is None else [int(lab)] + [_fmt(p) for p in row]
            for lab, row in zip(_aligned(labels, state_at), _aligned(proba, state_at),
                                strict=True))
    write_csv(args.out, header, rows)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """``emframe decode``: the most likely hidden states under a saved HMM."""
    est, data = _model_and_data(args, "decode", "is not an HMM; decode needs a model saved "
                                "by 'emframe fit gaussian-hmm|categorical-hmm|poisson-hmm|"
                                "multinomial-hmm|ar-hmm'")
    logprob, states = est.decode(data.X, data.lengths, algorithm=args.algorithm)
    # one line per input row; the lags of an autoregressive HMM have no state: empty cells
    cells = ["" if z is None else int(z) for z in _aligned(states, state_rows(est, data))]
    _write_steps(args.out, ["state"], ([z] for z in cells), data.lengths)
    if not args.quiet:
        print(f"{args.algorithm} path: log-probability {float(logprob):.6f}", file=sys.stderr)
    return 0


# -- impute ------------------------------------------------------------------------------------
def cmd_impute(args: argparse.Namespace) -> int:
    """``emframe impute``: fill missing cells (a fitted normal, or a saved model)."""
    args.data = resolve_input(args.data)
    check_output(args.out, [args.data, args.model_file, args.lengths])
    if args.model_file is None:
        if args.lengths is not None:
            raise InputError("--lengths applies with --model (a saved ssm or HMM)")
        spec = MODELS["mvn-missing"]
        data = load_data(args.data, args.columns)
        check_values(data, spec)
        est = spec.estimator_class(**{k: v for k, v in
                                      (("max_iter", args.max_iter), ("tol", args.tol),
                                       ("ridge", args.ridge)) if v is not None})
        fit_estimator(est, None, data.X, Progress(args.quiet))
        imputed = est.impute(data.X)
        how = (f"{est.n_iter_} iterations, "
               f"{'converged' if est.converged_ else 'NOT converged'}")
    else:
        given = [f"--{n.replace('_', '-')}" for n in ("ridge", "max_iter", "tol")
                 if getattr(args, n) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only for impute without --model (which "
                             "fits its own model); leave it out with --model")
        est, meta = _load_model(args.model_file)
        if not hasattr(est, "impute"):
            raise InputError(f"{args.model_file}: a {type(est).__name__} cannot impute; use a "
                             "model saved by 'emframe fit' with mvn-missing, gmm-missing, ssm "
                             "or an HMM")
        data = _data_for_model(args, est, meta)
        imputed = _with_lengths(est.impute, _spec_of(est), data)
        how = f"with the model {args.model_file}"
    missing = np.isnan(data.X)
    table = data.table
    header = list(table.names)
    out = np.array(table.values, copy=True)
    out[:, data.columns] = imputed
    rows = []
    for i in range(out.shape[0]):
        row = []
        for j in range(out.shape[1]):
            if j in data.columns or table.raw is None:
                # observed cells keep their text, so the file changes only where it was empty
                keep = table.raw is not None and not math.isnan(table.values[i, j])
                row.append(table.raw[i][j].strip() if keep else _fmt(out[i, j]))
            else:
                row.append(table.raw[i][j])
        rows.append(row)
    write_csv(args.out, header, rows)
    if not args.quiet:
        per_col = ", ".join(f"{n} {int(c)}" for n, c in zip(data.names, missing.sum(0),
                                                          strict=True) if c)
        print(f"imputed {int(missing.sum())} missing cells in {int(missing.any(1).sum())} rows "
              f"({per_col or 'none'}); {how}", file=sys.stderr)
    return 0


# -- smooth ------------------------------------------------------------------------------------
def cmd_smooth(args: argparse.Namespace) -> int:
    """``emframe smooth``: smoothed or filtered states under a saved state-space model."""
    est, data = _model_and_data(args, "smooth", "is not a state-space model; smooth needs "
                                "a model saved by 'emframe fit ssm' (the state or component "
                                "probabilities of an HMM or a mixture: 'emframe predict')")
    method = est.filter if args.filter else est.smooth
    means, covs = method(data.X, data.lengths)
    sd = np.sqrt(np.maximum(np.diagonal(covs, axis1=1, axis2=2), 0.0))
    header = [h for i in range(means.shape[1]) for h in (f"state{i}", f"state{i}_sd")]
    values = np.stack([means, sd], axis=2).reshape(means.shape[0], -1)
    _write_steps(args.out, header, ([_fmt(v) for v in row] for row in values), data.lengths)
    return 0


# -- select ----------------------------------------------------------------------------------------
