"""`dpmd convert-backend IN OUT`: a model from one file format to another, by suffix.

IN: any model file we read (formats.FORMATS: .dp, .pth, .pt2, .pb, .savedmodel, .json,
checkpoints) or a DeePMD-kit 3.x model (its .dp / .yaml serialization, frozen .pth, training
checkpoint .pt; deepmd_md.interop). OUT: any format we write. The weights are copied as they
are, so the output gives the input's numbers (to round-off of the target framework).
"""

from __future__ import annotations

NAME = "convert-backend"
HELP = "convert a model between formats (.dp, .pth, .pt2, .pb, .savedmodel, .json), or import " \
       "a DeePMD-kit model"
ORDER = 22


def add_arguments(p) -> None:
    p.add_argument("input", metavar="IN",
                   help="model to read: one of ours (any format, or a training checkpoint) or "
                   "a DeePMD-kit 3.x model (.dp / .yaml from `dp convert-backend`, frozen .pth, "
                   "training checkpoint .pt)")
    p.add_argument("output", metavar="OUT",
                   help="model to write; the suffix picks the format: .dp, .pth, .pt2, .pb, "
                   ".savedmodel, .json")


def read_any(path: str) -> tuple[dict, str]:
    """(ModelData, what it was) of one of our model files or a DeePMD-kit one."""
    import os

    from deepmd_md.errors import ModelFileError
    from deepmd_md.formats import read_model
    from deepmd_md.interop import is_deepmd_kit, read_deepmd_kit

    if not os.path.exists(path):
        raise ModelFileError(f"model file not found: {path}")
    if is_deepmd_kit(path):
        return read_deepmd_kit(path), "DeePMD-kit model"
    if path.endswith((".pth", ".pt")) and os.path.isfile(path):
        import zipfile

        if not zipfile.is_zipfile(path):  # ours and DeePMD-kit's are both zip archives
            raise ModelFileError(f"cannot read {path}: not a complete PyTorch archive "
                                 "(truncated, or not a model file)")
    return read_model(path), "model"


def run(args) -> int:
    import time

    from deepmd_md.errors import ConfigError
    from deepmd_md.formats import format_of, write_model

    fmt = format_of(args.output)
    if fmt is None or fmt.write is None:  # before reading: a typo costs nothing
        from deepmd_md.formats import WRITABLE

        raise ConfigError(f"unknown model format for {args.output}: use {WRITABLE}")
    data, what = read_any(args.input)
    if fmt.slow:
        print(f"converting {args.input} -> {args.output} ({fmt.slow}) ...", flush=True)
    t0 = time.perf_counter()
    write_model(data, args.output)
    print(f"converted {what} {args.input} -> {args.output} in {time.perf_counter() - t0:.1f} s")
    return 0
