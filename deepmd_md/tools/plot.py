"""PNG plots with matplotlib (the optional `plot` extra, Agg backend, no display needed):
the learning curve of an lcurve.out and parity plots of `dpmd test -d` detail files.

The figure is exactly width x height pixels (figsize = size / dpi, no tight bounding box)."""

from __future__ import annotations

import os

import numpy as np

from deepmd_md.tools import ToolError, staged_outputs


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ToolError("plotting needs matplotlib, which is not installed: "
                        "pip install deepmd-md[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_lcurve(path: str) -> tuple[list[str], np.ndarray]:
    """(column names, values [nrows, ncols]) of an lcurve.out; ToolError if unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as e:
        raise ToolError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ToolError(f"{path}: not a text file (expected an lcurve.out)") from None
    heads = [ln for ln in lines if ln.startswith("#")]
    names = heads[0].lstrip("#").split() if heads else []
    if not names or names[0] != "step":
        raise ToolError(f"{path}: no `# step ...` header line; is it an lcurve.out?")
    rows = []
    for i, ln in enumerate(lines, 1):
        if not ln.strip() or ln.startswith("#"):
            continue
        try:
            row = [float(x) for x in ln.split()]
        except ValueError:
            raise ToolError(f"{path}:{i}: not numbers: {ln.strip()[:60]}") from None
        if len(row) != len(names):
            raise ToolError(f"{path}:{i}: {len(row)} values but the header names "
                            f"{len(names)} columns")
        rows.append(row)
    if not rows:
        raise ToolError(f"{path}: no data rows yet")
    if not any(n.startswith("rmse") for n in names):
        raise ToolError(f"{path}: no rmse_* columns in the header")
    return names, np.array(rows)


def _save(fig, out: str, dpi: int) -> None:
    with staged_outputs() as stage:
        fig.savefig(stage(out), dpi=dpi, format="png")


def plot_lcurve(paths: list[str], out: str, size=(1200, 800), dpi: int = 100) -> None:
    """Every rmse* column against step (log y; training solid, validation dashed, one colour
    per quantity, line style per file when several) and the learning rate on a second log
    axis. size: (width, height) in pixels."""
    curves = [(p, *read_lcurve(p)) for p in paths]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    colours = {}
    try:
        lr_ax = ax.twinx()
        for n_file, (path, names, rows) in enumerate(curves):
            step = rows[:, 0]
            tag = f" ({os.path.basename(path)})" if len(curves) > 1 else ""
            for j, name in enumerate(names):
                y = rows[:, j]
                if not name.startswith("rmse") or not np.isfinite(y).any():
                    continue  # an all-nan column: a term without labels
                base = name.rsplit("_", 1)[0] if name.endswith(("_trn", "_val")) else name
                colour = colours.setdefault(base, f"C{len(colours)}")
                style = "--" if name.endswith("_val") else "-"
                ax.plot(step, np.where(y > 0, y, np.nan), style, color=colour, lw=1.2,
                        alpha=1.0 if n_file == 0 else 0.6, label=name + tag)
            if "lr" in names:
                lr_ax.plot(step, rows[:, names.index("lr")], ":", color="0.4", lw=1.2,
                           label="lr" + tag)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("RMSE (energy, virial per atom: eV; force: eV/Å)")
        if lr_ax.lines:
            lr_ax.set_yscale("log")
            lr_ax.set_ylabel("learning rate")
        else:
            lr_ax.set_axis_off()
        lines = ax.get_lines() + lr_ax.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize="small", loc="upper right")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title("learning curve: training solid, validation dashed, lr dotted")
        fig.tight_layout()  # inside the fixed canvas: the pixel size does not change
        _save(fig, out, dpi)
    finally:
        plt.close(fig)


PARITY = (("e_peratom", "energy per atom (eV)"), ("f", "force components (eV/Å)"),
          ("v_peratom", "virial per atom (eV)"))


def read_parity(prefix: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(title, data [n], pred [n]) per panel from PREFIX.{e_peratom,f,v_peratom}.out. The
    energy and force files must exist; virial rows whose labels are all zero (no virial
    labels: DeePMD-kit writes zeros) are left out, and so is the panel if none remain."""
    from deepmd_md.tools.detail import read_detail

    panels = []
    nframes = None
    for suf, title in PARITY:
        path = f"{prefix}.{suf}.out"
        if suf == "v_peratom" and not os.path.exists(path):
            continue
        if not os.path.exists(path):
            raise ToolError(f"{path} not found; write the detail files with "
                            f"`dpmd test -d {prefix}`")
        data, pred = read_detail(path)
        if suf == "e_peratom":
            nframes = data.shape[0]
        elif suf == "v_peratom":
            if data.shape[0] != nframes:
                raise ToolError(f"{path} has {data.shape[0]} frames but "
                                f"{prefix}.e_peratom.out has {nframes}; files of different "
                                "runs?")
            keep = np.any(data != 0, axis=1)
            data, pred = data[keep], pred[keep]
            if not len(data):
                continue
        elif data.shape[0] < nframes:  # at least one atom per frame
            raise ToolError(f"{path} has {data.shape[0]} rows, fewer than the {nframes} "
                            f"frames of {prefix}.e_peratom.out; files of different runs?")
        panels.append((title, data.ravel(), pred.ravel()))
    return panels


def plot_parity(prefix: str, out: str, size=None, dpi: int = 100) -> None:
    """Predicted against labeled values, one panel per quantity, with y = x and the RMSE.
    size: (width, height) pixels; default 500 x 500 per panel."""
    panels = read_parity(prefix)
    size = size or (500 * len(panels), 500)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi,
                             squeeze=False)
    try:
        for ax, (title, data, pred) in zip(axes[0], panels, strict=True):
            lo = float(min(data.min(), pred.min()))
            hi = float(max(data.max(), pred.max()))
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "-", color="0.5", lw=1)
            ax.scatter(data, pred, s=6, alpha=0.5, edgecolors="none")
            rmse = float(np.sqrt(np.mean((pred - data) ** 2)))
            ax.set_title(f"{title}\nRMSE {rmse:.3e}", fontsize="medium")
            ax.set_xlabel("label")
            ax.set_ylabel("prediction")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal", adjustable="box")
        fig.tight_layout()
        _save(fig, out, dpi)
    finally:
        plt.close(fig)
