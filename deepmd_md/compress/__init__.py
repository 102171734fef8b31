"""Model compression (`dpmd compress`): every 1-input embedding net of the descriptor becomes a
table of quintic polynomials (deepmd_md/kernels/tabulate.py, kernels/tabulate.cc).

What is tabulated (a "site" = one statistics block of the descriptor):
  se_e2_a, se_e2_r       every embedding net (t{j} or t{i}_{j}), fused with G^T R
  se_atten, se_atten_v2  the radial net of tebd_input_mode "strip" (the type net is already a
                         per-type-pair table)
  dpa2                   repinit's radial net (strip); three-body and repformer stay nets
  hybrid                 each member as above (tables under buffers/descriptor/<i>/compress)
The input of a net is the normalised s = (sw(r)/r - davg[t_i]) / dstd[t_i]. Over the training
data it lies in [lower, upper]: lower = min over center types of -davg/dstd (any neighbor at
rcut, any empty slot), upper = max of (sw(rmin)/rmin - davg)/dstd with rmin the data's smallest
neighbor distance. Table 1 covers [lower - step, upper] with stride `step`, table 2 [upper,
extrapolate x upper] with 10 x step (DeePMD-kit's `dp compress` meanings); beyond, the op
evaluates the net itself (exact), counted and reported every check_frequency calls.

ModelData of a compressed model: the tables in the descriptor's statistics
(buffers/descriptor[/repinit]/compress/<net> = {coef, grid, net}), the settings in
config["compress"]; the nets' parameters stay (so `.dp` round-trips and a model can be
compressed again with another step).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from deepmd_md.errors import ConfigError

DEFAULT_STEP = 0.01
DEFAULT_EXTRAPOLATE = 5.0
DEFAULT_CHECK_FREQUENCY = -1
MAX_TABLE_BYTES = 2**31  # all tables of one descriptor block


def _s_max(rmin: float, rcut_smth: float, rcut: float) -> float:
    """Largest s = sw(r)/r over r >= rmin (s decreases with r)."""
    from deepmd_md.model.env import switch

    if rmin >= rcut:
        return 0.0
    return float(switch(np.array([rmin]), rcut_smth, rcut)[0]) / rmin


def sites(config: dict, params: dict, buffers: dict, path: str = "model/descriptor") -> list[dict]:
    """The tabulatable parts of a model: [{"where": path under buffers/descriptor, "stats":
    {davg, dstd}, "rcut_smth", "rcut", "nets": {name: net params}, "activation"}]. A descriptor
    that cannot be compressed: ConfigError naming the part and why (a hybrid's member by its
    index: every member must be compressible)."""
    dcfg = config["descriptor"]
    t = dcfg["type"]
    pd, bd = params["descriptor"], buffers["descriptor"]
    if t == "hybrid":
        out = []
        for i, member in enumerate(dcfg["list"]):
            for site in sites({**config, "descriptor": member}, {"descriptor": pd[i]},
                              {"descriptor": bd[i]}, f"{path}/list/{i}"):
                out.append({**site, "where": (i, *site["where"])})
        return out
    if t in ("se_e2_a", "se_e2_r"):
        from deepmd_md.model.descriptors.se_e2 import net_keys

        names = net_keys(dcfg, len(config["type_map"]))
        return [{"where": (), "stats": bd, "rcut_smth": dcfg["rcut_smth"], "rcut": dcfg["rcut"],
                 "nets": {k: pd[k] for k in names}, "activation": dcfg["activation_function"]}]
    if t in ("se_atten", "se_atten_v2"):
        from deepmd_md.model.descriptors.se_atten import strip

        if not strip(dcfg):
            raise ConfigError(
                f"cannot compress {path} ({t}): with tebd_input_mode 'concat' its "
                "embedding net takes s together with the type embedding (1 + tebd_dim inputs "
                "or more), so it is no function of s alone to tabulate; train with "
                "tebd_input_mode 'strip' (or se_atten_v2) to compress")
        return [{"where": (), "stats": bd, "rcut_smth": dcfg["rcut_smth"], "rcut": dcfg["rcut"],
                 "nets": {"embedding": pd["embedding"]},
                 "activation": dcfg["activation_function"]}]
    if t == "dpa2":
        from deepmd_md.model.descriptors.dpa2 import block_stats

        ri = dcfg["repinit"]
        if ri.get("tebd_input_mode", "concat") != "strip":
            raise ConfigError(
                f"cannot compress {path}/repinit (dpa2): with tebd_input_mode "
                "'concat' its embedding net takes s together with the type embedding, so it "
                "is no function of s alone to tabulate; train with repinit/tebd_input_mode "
                "'strip' to compress")
        return [{"where": ("repinit",), "stats": block_stats(bd, "repinit"),
                 "rcut_smth": ri["rcut_smth"], "rcut": ri["rcut"],
                 "nets": {"embedding": pd["repinit"]["embedding"]},
                 "activation": ri["activation_function"]}]
    why = {
        "dpa3": "its edge and angle features enter message-passing layers through nets of many "
                "inputs; it has no 1-input embedding net to tabulate",
    }.get(t, "deepmd_md tabulates only se_e2_a, se_e2_r, se_atten/se_atten_v2 (strip), "
             "dpa2's repinit (strip) and hybrids of them")
    raise ConfigError(f"cannot compress {path} ({t}): {why}")


def table_range(site: dict, min_nbor_dist: float) -> tuple[float, float]:
    """(lower, upper) of the normalised s over the training data (module docstring)."""
    davg = np.asarray(site["stats"]["davg"], np.float64)[:, 0]
    dstd = np.asarray(site["stats"]["dstd"], np.float64)[:, 0]
    smax = _s_max(min_nbor_dist, site["rcut_smth"], site["rcut"])
    return float(np.min(-davg / dstd)), float(np.max((smax - davg) / dstd))


def compress(data: dict, min_nbor_dist: float, step: float = DEFAULT_STEP,
             extrapolate: float = DEFAULT_EXTRAPOLATE,
             check_frequency: int = DEFAULT_CHECK_FREQUENCY, log=None) -> dict:
    """A compressed copy of ModelData `data` (an already compressed one is tabulated again
    from its nets). log(str): a line per table (range, size, measured error)."""
    from deepmd_md.kernels.tabulate import build, make_grid
    from deepmd_md.model.model import model_dtype

    if not (step > 0 and math.isfinite(step)):
        raise ConfigError(f"--step must be a positive number (got {step})")
    if not (extrapolate >= 1 and math.isfinite(extrapolate)):
        raise ConfigError(f"--extrapolate must be >= 1 (got {extrapolate})")
    if not (min_nbor_dist > 0 and math.isfinite(min_nbor_dist)):
        raise ConfigError(f"the minimum neighbor distance must be positive (got {min_nbor_dist})")
    out = strip(data)
    dtype = model_dtype(out["config"])
    info = {}
    for site in sites(out["config"], out["params"], out["buffers"]):
        lower, upper = table_range(site, min_nbor_dist)
        if upper - lower < step:
            raise ConfigError(f"--step {step} is wider than the whole table range "
                              f"[{lower:.4g}, {upper:.4g}] of s; use a smaller step")
        grid = make_grid(lower - step, upper, step, extrapolate, check_frequency)
        width = site["nets"][next(iter(site["nets"]))]["layers"][-1]["w"].shape[1]
        size = (grid[5] + grid[6]) * 6 * width * np.dtype(dtype).itemsize * len(site["nets"])
        if size > MAX_TABLE_BYTES:
            raise ConfigError(f"the tables would take {size / 2**30:.1f} GiB ({int(grid[5])} + "
                              f"{int(grid[6])} intervals of s in [{lower:.4g}, {upper:.4g}] x "
                              f"{width} outputs x {len(site['nets'])} nets): use a larger --step")
        node = out["buffers"]["descriptor"]
        for key in site["where"]:
            node = node[key]
        tables = node.setdefault("compress", {})
        for name, net in site["nets"].items():
            tables[name] = build(net, site["activation"], grid, dtype)
            err = max_error(tables[name], net, site["activation"])
            label = "/".join(map(str, (*site["where"], name)))
            info[label] = {"lower": grid[0], "upper": grid[1], "hi": grid[2],
                           "intervals": [int(grid[5]), int(grid[6])], "max_error": err}
            if log:
                log(f"  {label}: s in [{grid[0]:.4g}, {grid[1]:.4g}) by {step:g} ({int(grid[5])}"
                    f" intervals), [{grid[1]:.4g}, {grid[2]:.4g}) by {10 * step:g} "
                    f"({int(grid[6])}), {tables[name]['coef'].shape[2]} outputs; max |table - "
                    f"net| at interval midpoints {err:.2e}")
    out["config"]["compress"] = {
        "step": float(step), "extrapolate": float(extrapolate),
        "check_frequency": int(check_frequency), "min_nbor_dist": float(min_nbor_dist),
        "tables": info}
    return out


def max_error(tab: dict, net: dict, activation: str) -> float:
    """max |table - net| at every interval's midpoint (where the interpolation error peaks)."""
    from deepmd_md.kernels.tabulate import _reference_values, knots
    from deepmd_md.model.nn import apply_embedding_fm

    xk = knots(tab["grid"])
    mid = 0.5 * (xk[1:] + xk[:-1])
    coef = np.asarray(tab["coef"], np.float64)
    got = _reference_values(dict(tab, coef=coef), net, activation, mid)
    exact = apply_embedding_fm(net, mid[None, :], activation).T
    return float(np.max(np.abs(got - exact)))


def is_compressed(data: dict) -> bool:
    return "compress" in data.get("config", {})


def strip(data: dict) -> dict:
    """A copy of `data` without tables (the plain model of its nets)."""
    out = {k: copy.deepcopy(v) for k, v in data.items()}
    out["config"].pop("compress", None)

    def drop(node):
        if isinstance(node, dict):
            node.pop("compress", None)
            for v in node.values():
                drop(v)
        elif isinstance(node, list):
            for v in node:
                drop(v)

    if out.get("buffers") is not None:
        drop(out["buffers"].get("descriptor"))
    return out


def describe(config: dict) -> str:
    """One line for `dpmd show`."""
    c = config.get("compress")
    if not c:
        return "compressed: no"
    tabs = c.get("tables", {})
    parts = [f"{name} s in [{t['lower']:.4g}, {t['upper']:.4g}) + [{t['upper']:.4g}, "
             f"{t['hi']:.4g}) ({t['intervals'][0]} + {t['intervals'][1]} intervals, max error "
             f"{t['max_error']:.1e})" for name, t in tabs.items()]
    return (f"compressed: yes (tabulated embedding nets, step {c['step']:g} and "
            f"{10 * c['step']:g}, extrapolate {c['extrapolate']:g}, min_nbor_dist "
            f"{c['min_nbor_dist']:.4g} A, check_frequency {c['check_frequency']}): "
            + "; ".join(parts))
