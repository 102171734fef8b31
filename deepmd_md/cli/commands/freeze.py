"""`dpmd freeze`: a checkpoint to a frozen model, format by suffix."""

from __future__ import annotations

import os

from deepmd_md.errors import ConfigError, ModelFileError

NAME = "freeze"
HELP = "freeze a checkpoint to .pth (TorchScript), .pt2 or .dp"
ORDER = 20


def add_arguments(p) -> None:
    p.add_argument("-c", "--checkpoint", default=".",
                   help="checkpoint (or any model file), or a folder whose `checkpoint` "
                   "file names the latest (default: the current folder)")
    p.add_argument("-o", "--output", default="frozen_model.pth",
                   help="output model; the suffix picks the format: .pth (TorchScript, for "
                   "LAMMPS and Python), .pt2 (AOTInductor, compiled for this CPU; slow to "
                   "write), .dp (backend-neutral HDF5) (default frozen_model.pth)")



def _resolve_checkpoint(path: str) -> str:
    if os.path.isdir(path):
        pointer = os.path.join(path, "checkpoint")
        if not os.path.isfile(pointer):
            raise ModelFileError(f"no checkpoint in {path}: `checkpoint` file not found; "
                                 "train first or pass -c FILE")
        with open(pointer) as f:
            return os.path.join(path, f.read().strip())
    if not os.path.isfile(path):
        raise ModelFileError(f"checkpoint not found: {path}")
    return path


_SLOW = {".pth": "TorchScript export, seconds", ".pt2": "AOTInductor compilation, typically "
         "1-3 minutes"}


def run(args) -> int:
    import time

    from deepmd_md.infer.deep_pot import load_model_data
    from deepmd_md.serialize import save_dp

    ckpt = _resolve_checkpoint(args.checkpoint)
    data = load_model_data(ckpt)  # a checkpoint, a .dp, or a .pth (which carries its .dp)
    out = args.output
    suffix = os.path.splitext(out)[1]
    if suffix in _SLOW:  # a line first: the .pt2 compile is silent for minutes otherwise
        print(f"freezing {ckpt} -> {out} ({_SLOW[suffix]}) ...", flush=True)
    t0 = time.perf_counter()
    if out.endswith(".pth"):
        from deepmd_md.backends.torch.freeze import freeze_pth

        freeze_pth(data, out)
    elif out.endswith(".pt2"):
        try:
            from deepmd_md.backends.torch.aoti import freeze_pt2
        except ImportError as e:
            raise ConfigError(f"cannot write .pt2: {e}") from None
        freeze_pt2(data, out)
    elif out.endswith(".dp"):
        save_dp(data, out)
    else:
        raise ConfigError(f"unknown model format for {out}: use .pth, .pt2 or .dp")
    print(f"frozen {ckpt} -> {out} in {time.perf_counter() - t0:.1f} s")
    return 0
