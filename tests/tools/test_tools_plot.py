"""`dpmd plot`: learning curve and parity PNGs of the requested pixel size (matplotlib, Agg)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from deepmd_md.cli.main import main

pytest.importorskip("matplotlib")

# our trainer's layout (validation columns first, nan for a term without labels) and
# DeePMD-kit's, which has a second comment line
_NAMES = ("step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val", "rmse_f_trn",
          "rmse_v_val", "rmse_v_trn", "lr")
_ROWS = ((0, 20.1, 19.0, 1.1, 1.0, 0.61, 0.60, "nan", "nan", 1e-3),
         (100, 9.01, 8.9, 0.41, 0.40, 0.31, 0.30, "nan", "nan", 5e-4),
         (200, 5.01, 4.9, 0.11, 0.10, 0.21, 0.20, "nan", "nan", 2.5e-4))
LCURVE = "# " + " ".join(f"{n:>12s}" for n in _NAMES) + "\n" + "".join(
    f"{r[0]:7d}   " + " ".join(f"{float(x):12.2e}" for x in r[1:-1]) + f" {r[-1]:12.1e}\n"
    for r in _ROWS)
LCURVE_DEEPMD = """# step       rmse_val    rmse_trn    rmse_e_val  rmse_e_trn    rmse_f_val  rmse_f_trn   lr
# If there is no available reference data, rmse_*_{val,trn} will print nan
      1      2.87e+01    2.50e+01      1.91e+00    1.84e+00      8.98e-01    7.83e-01    1.0e-03
      2      2.82e+01    2.80e+01      1.41e+00    1.92e+00      9.78e-01    8.94e-01    9.0e-04
"""


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG signature and IHDR chunk."""
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_lcurve_png(tmp_path, capsys):
    (tmp_path / "lcurve.out").write_text(LCURVE)
    (tmp_path / "dp.out").write_text(LCURVE_DEEPMD)
    out = tmp_path / "lcurve.png"
    assert main(["plot", str(tmp_path / "lcurve.out"), "-o", str(out)]) == 0
    assert png_size(out) == (1200, 800) and out.stat().st_size > 20000
    two = tmp_path / "two.png"
    assert main(["plot", str(tmp_path / "lcurve.out"), str(tmp_path / "dp.out"), "-o",
                 str(two), "--size", "640x480", "--dpi", "80"]) == 0
    assert png_size(two) == (640, 480)


def test_lcurve_of_a_training_run(trained, tmp_path):
    out = tmp_path / "run.png"
    assert main(["plot", str(trained / "lcurve.out"), "-o", str(out)]) == 0
    assert png_size(out) == (1200, 800)


def test_lcurve_png_pixels_change_with_data(tmp_path):
    """The curves are drawn: different data, different image."""
    a, b = tmp_path / "a.out", tmp_path / "b.out"
    a.write_text(LCURVE)
    b.write_text(LCURVE.replace("2.10e-01", "9.10e-01"))
    assert LCURVE != b.read_text()
    main(["plot", str(a), "-o", str(tmp_path / "a.png")])
    main(["plot", str(b), "-o", str(tmp_path / "b.png")])
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


def test_parity_png(models, systems, tmp_path):
    prefix = tmp_path / "det"
    assert main(["test", "-m", str(models["m1.pth"]), "-s", str(systems), "-d",
                 str(prefix)]) == 0
    assert main(["plot", "-d", str(prefix)]) == 0
    out = tmp_path / "det.parity.png"
    assert png_size(out) == (1500, 500) and out.stat().st_size > 20000  # e, f, v panels
    # a system without virial labels: its all-zero label rows are no panel
    only_a = tmp_path / "a"
    main(["test", "-m", str(models["m1.pth"]), "-s", str(systems / "a"), "-d", str(only_a)])
    main(["plot", "-d", str(only_a), "-o", str(tmp_path / "a.png")])
    assert png_size(tmp_path / "a.png") == (1000, 500)


def test_parity_panels_read_from_files(models, systems, tmp_path):
    from deepmd_md.tools.plot import read_parity

    prefix = tmp_path / "det"
    main(["test", "-m", str(models["m1.pth"]), "-s", str(systems), "-d", str(prefix)])
    panels = read_parity(str(prefix))
    assert [p[0].split()[0] for p in panels] == ["energy", "force", "virial"]
    e = np.loadtxt(f"{prefix}.e_peratom.out")
    np.testing.assert_array_equal(panels[0][1], e[:, 0])
    assert len(panels[2][1]) == 9 * 4  # frames of b and c (with virial labels) only
