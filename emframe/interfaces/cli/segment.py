"""The ``segment`` command: colour segmentation of an image by a Gaussian mixture."""

from __future__ import annotations

import argparse
import os

import numpy as np

from emframe.interfaces.cli.running import Progress, fit_estimator, make_estimator
from emframe.interfaces.cli.specs import MODELS, InputError, plural
from emframe.interfaces.cli.tables import _pyplot, check_output, resolve_input
from emframe.interfaces.io import atomic_write


def cmd_segment(args: argparse.Namespace) -> int:
    """``emframe segment``: paint each pixel with its component's mean colour."""
    import matplotlib.image as mpimg

    args.image = resolve_input(args.image)
    check_output(args.out, [args.image])
    check_output(args.model_out, [args.image, args.out])
    _pyplot()
    if not os.path.isfile(args.image):
        raise InputError(f"{args.image}: no such file")
    if not args.out.lower().endswith(".png"):
        raise InputError(f"--out {args.out}: segment writes PNG; give a name ending in .png")
    try:
        img = mpimg.imread(args.image, format="png")
    except Exception as exc:  # matplotlib/PIL raise many types for a bad image
        raise InputError(f"{args.image}: not a readable PNG image ({exc})") from None
    img = np.asarray(img, dtype=float)
    if img.dtype.kind != "f" or img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    colour = img[:, :, : 3 if c >= 3 else 1].reshape(h * w, -1)
    rng = np.random.default_rng(args.seed)
    train = colour
    if args.max_pixels and h * w > args.max_pixels:
        # the colours of a random subset of pixels fit the mixture as well, much faster
        train = colour[rng.choice(h * w, args.max_pixels, replace=False)]
    k = args.components or 2
    if k > train.shape[0]:
        raise InputError(f"--components {k} is more than the {plural(train.shape[0], 'pixel')} "
                         f"{'sampled (--max-pixels)' if train is not colour else 'of the image'}")
    spec = MODELS["gmm"]
    est = make_estimator(spec, args)
    fit_estimator(est, None, train, Progress(args.quiet))
    labels = est.predict(colour)
    means = np.clip(np.asarray(est.means_), 0.0, 1.0)
    out = means[labels].reshape(h, w, -1)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    if c == 4:
        out = np.concatenate([out, img[:, :, 3:4]], axis=2)
    # round to 8 bits here: imsave would truncate floats
    out8 = np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)
    with atomic_write(args.out, "wb") as fh:
        mpimg.imsave(fh, out8, format="png")
    shares = np.bincount(labels, minlength=means.shape[0]) / labels.size
    print(f"segmented {args.image} ({w}x{h} pixels) into {means.shape[0]} colours "
          f"(fitted on {train.shape[0]} pixels, {est.n_iter_} iterations)")
    for k in np.argsort(-shares):
        rgb = means[k] if means.shape[1] == 3 else np.repeat(means[k], 3)
        hexcol = "#" + "".join(f"{int(round(v * 255)):02x}" for v in rgb)
        print(f"  component {k}: colour {hexcol}  {100 * shares[k]:5.1f}% of pixels")
    print(f"saved image   {args.out}")
    if args.model_out is not None:
        est.save(args.model_out, metadata={"cli_model": "gmm", "columns": ["r", "g", "b"][:c]})
    return 0


