"""The ``emframe`` command line: fit, predict, impute, decode, select and segment from a shell.

Run ``emframe --help`` or ``emframe COMMAND --help``; the reference is docs/cli.md.

Exit codes: 0 on success (also when the reader of stdout stops early: output
files are written before anything is printed); 2 for usage errors and bad input
(the message names the file, row and column); 130 when interrupted (Ctrl-C); 1
for any other failure. Outputs are written atomically and never over an input
file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from emframe._version import __version__
from emframe.inference.compiled import caused_by_interrupt
from emframe.interfaces.cli.apply import cmd_decode, cmd_impute, cmd_predict, cmd_smooth
from emframe.interfaces.cli.cluster import add_cluster_options
from emframe.interfaces.cli.fit import SELECT_N_INIT, cmd_fit, cmd_select, parse_range
from emframe.interfaces.cli.running import _show_warning
from emframe.interfaces.cli.segment import cmd_segment
from emframe.interfaces.cli.specs import MODELS, PROG, SSM_FIELDS, InputError


# -- argument parsing ------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits with 2 on usage errors
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _checked(convert: Any, what: str, ok: Any, must: str) -> Any:
    """An argparse ``type``: ``convert(text)``, refused unless ``ok(value)``.

    Parameters
    ----------
    convert : callable
        ``int`` or ``float``.
    what : str
        What the text should be, for the error when it does not convert ("an integer").
    ok : callable
        The condition on the value.
    must : str
        The error when it fails, formatted with ``v`` (the value) and ``text``.

    Returns
    -------
    callable
        ``str -> value``, raising ``argparse.ArgumentTypeError``.
    """

    def parse(text: str) -> Any:
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(must.format(v=v, text=text))
        return v

    return parse


_positive_int = _checked(int, "an integer", lambda v: v >= 1,
                         "must be a positive integer, got {v}")
_non_negative_int = _checked(int, "an integer", lambda v: v >= 0,
                             "must be a non-negative integer, got {v}")
_non_negative_float = _checked(float, "a number", lambda v: math.isfinite(v) and v >= 0,
                               "must be a finite non-negative number, got {text}")
_seed = _checked(int, "an integer seed", lambda v: v >= 0, "the seed must be >= 0, got {v}")


def _add_common_fit_options(p: argparse.ArgumentParser, *, components: bool = True) -> None:
    if components:
        p.add_argument("--components", "-k", type=_positive_int, metavar="K",
                       help="number of components or hidden states (default 2)")
        p.add_argument("--covariance-type", choices=["full", "diag", "spherical", "tied"],
                       help="covariance structure of gmm, gmm-missing and gaussian-hmm "
                       "(default full for the mixtures, diag for gaussian-hmm)")
        p.add_argument("--n-init", type=_positive_int, metavar="N",
                       help="restarts from different random starts; the best is kept")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="random seed, so a run can be repeated (default 0)")
    p.add_argument("--max-iter", type=_positive_int, metavar="N", help="maximum EM iterations")
    p.add_argument("--tol", type=_non_negative_float, metavar="T",
                   help="stop when the mean log-likelihood per row improves by less than T")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress report on stderr (by default a live bar on a terminal, "
                   "with the [cli] extra, else a line per restart and at most one a second)")


def _add_order(p: argparse.ArgumentParser) -> None:
    p.add_argument("--order", type=_positive_int, metavar="P",
                   help="ar-hmm: number of lags of the autoregressions (default 1); the first "
                   "P rows of every sequence are lags only")


def _add_noise(p: argparse.ArgumentParser) -> None:
    p.add_argument("--noise", action="store_true",
                   help="gmm and tmix: add a uniform background component over the data's "
                   "bounding box for scattered noise, its weight estimated by EM; predict "
                   "labels the rows it explains best -1")


def _add_ssm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local-level", action="store_true",
                   help="ssm: the local-level model, a random-walk level observed with noise "
                   "(state dim 1, transition and observation matrices 1 and frozen, no "
                   "offsets, a vague frozen prior on the first level); EM estimates the "
                   "two variances")
    p.add_argument("--freeze", action="append", metavar="FIELDS",
                   help="ssm: fields held at their initial values, comma-separated (may be "
                   f"repeated): {', '.join(SSM_FIELDS)}")
    p.add_argument("--init", action="append", metavar="FIELD=VALUES",
                   help="ssm: initial value of a field, numbers separated by commas and rows "
                   "of a matrix by semicolons (quote them: 'transition_matrix=1,0;0,1'); "
                   "may be repeated")
    p.add_argument("--no-offsets", action="store_true",
                   help="ssm: no transition and observation offsets (zero, not estimated)")


def _add_columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--columns", "-c", action="append", metavar="COLS",
                   help="columns to use, by name, number from 1 or range of numbers (1-64), "
                   "comma-separated (may be repeated); default all")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``emframe`` command."""
    parser = _Parser(
        prog=PROG,
        description="Fit latent-variable models by EM from the command line. Data are CSV "
        "files with a header row (missing values as empty cells or NaN) or .npy arrays.",
        epilog="Exit status: 0 success, 2 usage error or bad input, 130 interrupted, "
        "1 other failure. "
        "See 'emframe COMMAND --help'.",
    )
    parser.add_argument("--version", action="version", version=f"emframe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    models_help = "; ".join(f"{s.name}: {s.help}" for s in MODELS.values())

    p = sub.add_parser("fit", help="fit a model and print a summary",
                       description=f"Fit a model by EM and print a summary. Models: "
                       f"{models_help}.")
    p.add_argument("model", choices=list(MODELS), metavar="MODEL",
                   help=f"one of {', '.join(MODELS)}")
    p.add_argument("data", metavar="DATA", help="CSV file with a header row, or .npy; "
                   "example:NAME for shipped data (example:old_faithful)")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN",
                   help="HMMs and ssm: a column of sequence ids (a new sequence starts where "
                   "the id changes) or a file of sequence lengths, one per line")
    p.add_argument("--drop-missing", action="store_true",
                   help="leave out rows with a missing value (for models without missing data)")
    p.add_argument("--state-dim", type=_positive_int, metavar="M",
                   help="ssm: dimension of the hidden state (default 1)")
    _add_ssm_options(p)
    _add_order(p)
    _add_noise(p)
    _add_common_fit_options(p)
    p.add_argument("--out", "-o", metavar="MODEL.npz", help="save the fitted model here")
    p.add_argument("--plot", metavar="FILE.png", help="save a picture of the fit here")
    add_cluster_options(p, _positive_int)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="labels and probabilities from a saved model",
                       description="Write the most probable component (or HMM state) of every "
                       "row and the probabilities of all of them, as CSV.")
    p.add_argument("model_file", metavar="MODEL_FILE", help="a model saved by 'emframe fit'")
    p.add_argument("data", metavar="DATA")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="HMMs: sequences, as for fit")
    p.add_argument("--out", "-o", metavar="FILE.csv", help="write here instead of stdout")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("impute", help="fill missing values (multivariate normal or a saved "
                       "state-space model)",
                       description="Fit a multivariate normal to data with missing values by "
                       "EM and write the data with every missing cell replaced by its "
                       "conditional mean given the observed cells of its row. With --model, "
                       "use a saved model instead (a state-space model fills a cell from "
                       "every observed cell of its sequence).")
    p.add_argument("data", metavar="DATA")
    _add_columns(p)
    p.add_argument("--model", metavar="MODEL_FILE", dest="model_file",
                   help="a model saved by 'emframe fit' (ssm or mvn-missing) to impute with")
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="ssm: sequences, as for fit")
    p.add_argument("--ridge", type=_non_negative_float, metavar="R",
                   help="covariance regularisation (default 0)")
    p.add_argument("--max-iter", type=_positive_int, metavar="N")
    p.add_argument("--tol", type=_non_negative_float, metavar="T")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--out", "-o", metavar="FILE.csv", help="write here instead of stdout")
    p.set_defaults(func=cmd_impute)

    p = sub.add_parser("decode", help="most likely hidden state path of an HMM",
                       description="Write the most likely state of every row under a saved "
                       "HMM (Viterbi path), as CSV.")
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("data", metavar="DATA")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="sequences, as for fit")
    p.add_argument("--algorithm", choices=["viterbi", "map"], default="viterbi",
                   help="viterbi: the jointly most likely path (default); map: the most "
                   "likely state at each step")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--out", "-o", metavar="FILE.csv", help="write here instead of stdout")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("smooth", help="smoothed hidden states of a state-space model",
                       description="Write the smoothed mean and standard deviation of every "
                       "hidden state at every row under a saved state-space model (fit ssm), "
                       "given all observed cells of the row's sequence, as CSV.")
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("data", metavar="DATA")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="sequences, as for fit")
    p.add_argument("--filter", action="store_true",
                   help="filtered states (given the rows up to each one) instead")
    p.add_argument("--out", "-o", metavar="FILE.csv", help="write here instead of stdout")
    p.set_defaults(func=cmd_smooth)

    p = sub.add_parser("select", help="choose the number of components by BIC/AIC",
                       description="Fit the model for each number of components and print "
                       "a table of log-likelihood, BIC and AIC; the best is marked with *.")
    p.add_argument("model", choices=list(MODELS), metavar="MODEL",
                   help=", ".join(m for m, s in MODELS.items()
                                  if s.kind not in ("gaussian", "ssm")))
    p.add_argument("data", metavar="DATA")
    p.add_argument("--components", "-k", type=parse_range, default=parse_range("1-6"),
                   metavar="RANGE", help="component counts to try, like 1-8 or 2,3,5 "
                   "(default 1-6)")
    p.add_argument("--covariance-type", metavar="TYPES",
                   type=_covariance_types,
                   help="covariance structure(s) to try, comma-separated "
                   "(full,diag,spherical,tied)")
    p.add_argument("--criterion", choices=["bic", "aic"], default="bic")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="HMMs: sequences, as for fit")
    p.add_argument("--drop-missing", action="store_true")
    _add_order(p)
    _add_noise(p)
    p.add_argument("--n-init", type=_positive_int, metavar="N", default=SELECT_N_INIT,
                   help="restarts per fit, the best kept (default %(default)s: a single start "
                   "can stop at a poor local maximum and distort the comparison)")
    p.add_argument("--seed", type=_seed, default=0, metavar="S")
    p.add_argument("--max-iter", type=_positive_int, metavar="N")
    p.add_argument("--tol", type=_non_negative_float, metavar="T")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--out", "-o", metavar="MODEL.npz", help="save the best model here")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("segment", help="segment a PNG image by a Gaussian mixture on colours",
                       description="Fit a Gaussian mixture to the pixel colours of a PNG image "
                       "and paint every pixel with the mean colour of its component.")
    p.add_argument("image", metavar="IMAGE.png")
    p.add_argument("--out", "-o", required=True, metavar="SEGMENTED.png")
    _add_common_fit_options(p)
    p.add_argument("--max-pixels", type=_non_negative_int, default=20000, metavar="N",
                   help="fit on a random subset of at most N pixels (0: all; default 20000); "
                   "every pixel is then labelled")
    p.add_argument("--model-out", metavar="MODEL.npz", help="also save the fitted mixture")
    p.set_defaults(func=cmd_segment)
    return parser


def _covariance_types(text: str) -> str:
    valid = {"full", "diag", "spherical", "tied"}
    parts = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in parts if t not in valid]
    if not parts or bad:
        raise argparse.ArgumentTypeError(f"invalid covariance type(s) {bad or text!r}; "
                                         f"choose from {sorted(valid)}")
    return ",".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return status
    except InputError as exc:
        if os.environ.get("EMFRAME_DEBUG") and exc.__cause__ is not None:
            raise exc.__cause__ from None  # the estimator's own error, with its traceback
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        # The reader of stdout went away (emframe ... | head). Every output file is written
        # before anything is printed, so the command did its job: success, and no traceback
        # when Python flushes stdout at exit.
        _silence_stdout()
        return 0
    except Exception as exc:
        if caused_by_interrupt(exc):  # Ctrl-C inside compiled code (numba)
            return _interrupted()
        if os.environ.get("EMFRAME_DEBUG"):
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _interrupted() -> int:
    print(f"{PROG}: interrupted", file=sys.stderr)
    return 130


def _silence_stdout() -> None:
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (an in-memory stdout)
        pass
