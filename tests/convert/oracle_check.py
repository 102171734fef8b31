"""Check by hand (not a test): a DeePMD-kit model file -> ours through `dpmd convert-backend`,
then our torch DeepPot against DeePMD-kit's numbers in an oracle ref.npz (frames 0..N-1; keys
coord [nf, nat*3], box [nf, 9], atype [nat], e [nf], f [nf, nat, 3], v [nf, 9]).

    .venv/bin/python tests/convert/oracle_check.py /tmp/dp_oracle/dpa2_small/model.dp \
        /tmp/dp_oracle/dpa2_small/ref.npz 2
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deepmd_md.cli.main import main as dpmd  # noqa: E402
from deepmd_md.infer import DeepPot  # noqa: E402


def main() -> None:
    src, ref, nf = sys.argv[1], np.load(sys.argv[2]), int(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        assert dpmd(["convert-backend", src, f"{tmp}/m.dp"]) == 0
        dp = DeepPot(f"{tmp}/m.dp", backend="torch")
        nat = ref["atype"].size
        for i in range(nf):
            e, f, v = dp.eval(ref["coord"][i:i + 1], ref["box"][i:i + 1], ref["atype"])[:3]
            de = abs(e.ravel()[0] - ref["e"].ravel()[i]) / nat
            df = np.abs(f.ravel() - ref["f"][i].ravel()).max()
            dv = np.abs(v.ravel() - ref["v"][i].ravel()).max() / nat
            print(f"{src} frame {i}: |dE|/atom {de:.2e} eV, max |dF| {df:.2e} eV/A, "
                  f"max |dV|/atom {dv:.2e} eV", flush=True)


if __name__ == "__main__":
    main()
