"""Fitted attributes of the HMM estimators backed by their parameter set."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["_ParamAttribute", "_store_args", "hmm_init"]

#: The keyword arguments every HMM estimator takes after its own: (name, default,
#: annotation). ``init_params`` and ``params`` default to the estimator's letters.
_COMMON_KEYWORDS: tuple[tuple[str, Any, str], ...] = (
    ("startprob_prior", 1.0, "Any"),
    ("transmat_prior", 1.0, "Any"),
    ("algorithm", "viterbi", "str"),
    ("init_params", None, "str"),
    ("params", None, "str"),
    ("tol", 1e-4, "float"),
    ("max_iter", 100, "int"),
    ("n_init", 1, "int"),
    ("random_state", None, "Any"),
    ("verbose", 0, "int"),
    ("warm_start", False, "bool"),
    ("strict", False, "bool"),
    ("backend", "auto", "str"),
)


def _store_args(obj: Any, args: Mapping[str, Any]) -> None:
    """Store constructor arguments unchanged (scikit-learn's convention)."""
    for name, value in args.items():
        if name not in ("self", "__class__"):
            setattr(obj, name, value)


def hmm_init(
    positional: Sequence[tuple[str, Any, str]],
    keywords: Sequence[tuple[str, Any, str]] = (),
    *,
    letters: str | None,
) -> Callable[..., None]:
    """The ``__init__`` of an HMM estimator: it stores its arguments unchanged.

    Its signature, which ``get_params`` and ``help`` read, is ``positional``, then
    the keyword-only ``keywords`` and the arguments common to every HMM estimator
    (``startprob_prior`` ... ``backend``), so their defaults are written once.

    Parameters
    ----------
    positional : sequence of (name, default, annotation)
        The estimator's own leading arguments (``n_components``, ...).
    keywords : sequence of (name, default, annotation), optional
        Its own keyword-only arguments, placed before the common ones.
    letters : str or None
        Default of ``init_params`` and ``params``: all the estimator's letters
        (None: all the letters of the emission given).

    Returns
    -------
    callable
        The ``__init__`` function, with ``__signature__`` set.
    """
    kinds = inspect.Parameter
    common = [
        (n, letters if n in ("init_params", "params") else d,
         "str | None" if n in ("init_params", "params") and letters is None else a)
        for n, d, a in _COMMON_KEYWORDS
    ]
    signature = inspect.Signature(
        [kinds("self", kinds.POSITIONAL_OR_KEYWORD)]
        + [kinds(n, kinds.POSITIONAL_OR_KEYWORD, default=d, annotation=a)
           for n, d, a in positional]
        + [kinds(n, kinds.KEYWORD_ONLY, default=d, annotation=a)
           for n, d, a in [*keywords, *common]],
        return_annotation="None",
    )

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}.__init__() {exc}") from None
        bound.apply_defaults()
        _store_args(self, bound.arguments)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    return __init__


class _ParamAttribute:
    """A fitted attribute (``startprob_``, ``means_``, ...) backed by the parameter set.

    Before ``fit`` it stores a user-supplied initial value (hmmlearn style: leave its
    letter out of ``init_params``). After ``fit`` it reads ``params_``, and assigning
    to it replaces that field of ``params_`` (validated), so the attribute and the
    parameters used for scoring can never disagree.
    """

    def __init__(self, field: str, doc: str = "") -> None:
        self.field = field
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._get_param_attribute(self.field, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj._set_param_attribute(self.field, self.name, value)

    def __delete__(self, obj: Any) -> None:
        obj.__dict__.get("_given", {}).pop(self.field, None)
