"""`dpmd freeze`: a checkpoint to a frozen model, format by suffix."""

from __future__ import annotations

import os

from deepmd_md.errors import ModelFileError

NAME = "freeze"
HELP = "freeze a checkpoint to .pth (TorchScript), .pt2 or .dp"
ORDER = 20


def add_arguments(p) -> None:
    p.add_argument("-c", "--checkpoint", default=".",
                   help="checkpoint (or any model file), or a folder whose `checkpoint` "
                   "file names the latest (default: the current folder)")
    from deepmd_md.formats import FORMATS

    kinds = "; ".join(f"{s} ({f.what})" for s, f in FORMATS.items() if f.write)
    p.add_argument("-o", "--output", default="frozen_model.pth",
                   help=f"output model; the suffix picks the format: {kinds} "
                   "(default frozen_model.pth)")


def _resolve_checkpoint(path: str) -> str:
    from deepmd_md.formats import format_of

    if os.path.isdir(path) and format_of(path) is None:  # a training folder, not a .savedmodel
        pointer = os.path.join(path, "checkpoint")
        if not os.path.isfile(pointer):
            raise ModelFileError(f"no checkpoint in {path}: `checkpoint` file not found; "
                                 "train first or pass -c FILE")
        with open(pointer) as f:
            return os.path.join(path, f.read().strip())
    if not os.path.exists(path):
        raise ModelFileError(f"checkpoint not found: {path}")
    return path


def run(args) -> int:
    import time

    from deepmd_md.formats import format_of, read_model, write_model

    ckpt = _resolve_checkpoint(args.checkpoint)
    data = read_model(ckpt)  # any model file: a checkpoint, .dp, .pth, .pt2, ...
    out = args.output
    fmt = format_of(out)
    if fmt is not None and fmt.slow:  # a line first: the .pt2 compile is silent for minutes otherwise
        print(f"freezing {ckpt} -> {out} ({fmt.slow}) ...", flush=True)
    t0 = time.perf_counter()
    write_model(data, out)
    print(f"frozen {ckpt} -> {out} in {time.perf_counter() - t0:.1f} s")
    return 0
