"""Freeze a model to a Paddle inference program: `NAME.json` (the PIR program) + `NAME.pdiparams`
(its weights) beside it, the files Paddle Inference (Python and C++) loads.

The program is forward_lower for one frame with every size dynamic, forces by static-graph
autodiff (paddle.static.gradients) inside:

    inputs  extended_coord [1, nall, 3] f64, extended_atype [1, nall] i64,
            nlist [1, nloc, nnei] i64 (raw: any order, -1 padded, atoms beyond rcut allowed),
            mapping [1, nall] i64 (message-passing models only: owner < nloc of each atom)
            comm [1] i64, atom_weight [1, nloc] f64 (message-passing models, when the Paddle
            operators are built: the ghost exchange's handle, 0 = by mapping, else the address of
            the engine's dpmd_exchange; energy = sum of weight x atom energy)
    outputs atom_energy [1, nloc], energy [1], extended_force [1, nall, 3], virial [1, 9],
            extended_virial [1, nall, 9]   (all f64, in this order)

One logical model: the `.json` also carries, under the key "deepmd_md" (Paddle ignores keys it
does not know), "metadata.json" (the text the C++ core reads, as in the other formats) and
"model.dp" (the backend-neutral model, base64) that `read_paddle` returns.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import warnings

import numpy as np

from deepmd_md.backends.common import frozen_metadata
from deepmd_md.errors import ModelFileError
from deepmd_md.model.model import (
    atomic_outputs,
    atomic_outputs_blocked,
    message_passing_of,
    sel_of,
    supports_blocked,
)
from deepmd_md.serialize import load_dp, save_dp
from deepmd_md.tree import flatten, unflatten

PADDLE_FORMAT = "deepmd_md.paddle"
PADDLE_VERSION = 1
KEY = "deepmd_md"  # the .json's own key for metadata and the .dp
INPUTS = ("extended_coord", "extended_atype", "nlist", "mapping", "comm", "atom_weight")
OUTPUT_NAMES = ("atom_energy", "energy", "extended_force", "virial", "extended_virial")


def metadata(data: dict, widths: list[int] | None = None) -> dict:
    """What the C++ core reads (docs/core_contract.md). widths: the columns of each
    dpmd_ghost_exchange call when the program holds the op (message passing on several ranks);
    without it a message-passing model runs in one domain, given `mapping`."""
    cfg = data["config"]
    return frozen_metadata(data, PADDLE_FORMAT, PADDLE_VERSION, widths=widths,
                           blocked=supports_blocked(cfg), receptive_field=widths is not None) | {
        "inputs": input_names(cfg, widths is not None)}


def exchange_op(cfg: dict) -> bool:
    """Whether a program of this model holds dpmd_ghost_exchange: message passing, and the
    operators are built."""
    if not message_passing_of(cfg):
        return False
    from deepmd_md.backends.paddle.ops import load_ops

    return load_ops(required=False)


def _example(ntypes: int, width: int):
    """A tiny extended frame (6 atoms, 3 local) to trace on: coord, atype, nlist, mapping."""
    rng = np.random.default_rng(0)
    nall, nloc = 6, 3
    coord = rng.random((1, nall, 3)) * 2.0
    atype = (np.arange(nall) % ntypes).reshape(1, nall)
    nlist = np.array([[[j for j in range(nall) if j != i] + [-1] * (width - nall + 1)
                       for i in range(nloc)]])
    mapping = (np.arange(nall) % nloc).reshape(1, nall)
    return coord, atype, nlist, mapping


def _paddle():
    """paddle, imported through the adapter: its TensorFlow-first check, the shim registered."""
    from deepmd_md.backends.paddle import adapter

    return adapter.paddle


def _blocked_example(ntypes: int, ext_atype):
    """Per-type nlists [1, 3, w_t] and local indices per type of the example frame."""
    nlists = [np.array([[[1, 3, -1], [4, -1, -1], [0, 5, -1]]]),
              np.array([[[2, 4], [0, 5], [-1, -1]]])][:ntypes]
    nlists += [np.full((1, 3, 2), -1)] * (ntypes - len(nlists))
    return nlists, [np.nonzero(ext_atype[0, :3] == t)[0] for t in range(ntypes)]


def input_names(cfg: dict, exchange: bool = False) -> list[str]:
    """The program's inputs: blocked models take per-type lists (nlist_t [1, nloc, w_t]) and
    local indices per type (center_t [n_t]) instead of one raw nlist; message-passing models
    take mapping, and with the exchange op comm and atom_weight."""
    if supports_blocked(cfg):
        nt = len(cfg["type_map"])
        return [*INPUTS[:2], *(f"nlist_{t}" for t in range(nt)), *(f"center_{t}" for t in range(nt))]
    return list(INPUTS[:6 if exchange else 4 if message_passing_of(cfg) else 3])


def build_program(data: dict):
    """(main program, startup program, feed Values, fetch Values, exchange widths or None) of
    forward_lower, or of forward_blocked for typed descriptors (metadata "blocked")."""
    paddle = _paddle()
    from deepmd_md.backends.paddle.trace import DUAL, Dual, is_dual
    from deepmd_md.model.xp import register_namespace

    register_namespace(is_dual, DUAL)
    cfg = data["config"]
    mp, blocked, exchange = message_passing_of(cfg), supports_blocked(cfg), exchange_op(cfg)
    width = max(sel_of(cfg))
    ex = _example(len(cfg["type_map"]), width + 2)
    names = input_names(cfg, exchange)
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        shapes = {INPUTS[0]: [1, -1, 3], INPUTS[1]: [1, -1], INPUTS[3]: [1, -1], INPUTS[4]: [1],
                  INPUTS[5]: [1, -1]}
        feeds = [paddle.static.data(n, shapes.get(n, [-1] if n.startswith("center") else
                                                  [1, -1, -1]),
                                    "float64" if n in (INPUTS[0], INPUTS[5]) else "int64")
                 for n in names]
        coord = feeds[0]
        coord.stop_gradient = False
        trees = {}
        for tree in ("params", "buffers"):
            leaves = {}
            for i, (path, v) in enumerate(flatten(data[tree]).items()):
                v = np.ascontiguousarray(v)
                p = paddle.static.create_parameter(
                    list(v.shape), str(v.dtype), name=f"{tree}_{i}",
                    default_initializer=paddle.nn.initializer.Assign(v))
                p.stop_gradient = True
                leaves[path] = Dual(v, p)
            trees[tree] = unflatten(leaves)
        d = [Dual(ex[0], coord), Dual(ex[1], feeds[1])]
        if blocked:
            nt = len(cfg["type_map"])
            nls, centers = _blocked_example(nt, ex[1])
            ae = atomic_outputs_blocked(
                cfg, trees["params"], trees["buffers"], *d,
                [Dual(e, s) for e, s in zip(nls, feeds[2:2 + nt], strict=True)],
                [Dual(e, s) for e, s in zip(centers, feeds[2 + nt:], strict=True)])["energy"].s
        else:
            # the raw list always gets `width` empty slots more: the traced branch (no padding
            # inside format_nlist) then holds for any runtime width, as for the example's
            nloc_rt = paddle.shape(feeds[2])[1]
            pad_s = paddle.full(paddle.stack([paddle.to_tensor(1, "int64"), nloc_rt,
                                              paddle.to_tensor(width, "int64")]), -1, "int64")
            nlist_s = paddle.concat([feeds[2], pad_s], axis=2)
            nlist_e = np.concatenate([ex[2], np.full((1, 3, width), -1)], axis=2)
            mapping = Dual(ex[3], feeds[3]) if mp else None
            comm = None
            if exchange:
                from deepmd_md.backends.paddle.ops import OpExchange

                comm = OpExchange(mapping, Dual(np.zeros(1, np.int64), feeds[4]))
            ae = atomic_outputs(cfg, trees["params"], trees["buffers"], *d,
                                Dual(nlist_e, nlist_s), raw_nlist=True, mapping=mapping, comm=comm)
            ae = ae["energy"].s
        ae = paddle.cast(ae, "float64")
        we = ae * feeds[5] if exchange else ae  # the core's weights (widened ghost shell)
        (grad,) = paddle.static.gradients([paddle.sum(we)], [coord])
        force = -grad
        atom_virial = paddle.reshape(paddle.unsqueeze(coord, -1) * paddle.unsqueeze(force, -2),
                                     [1, -1, 9])
        fetches = [ae, paddle.sum(we, axis=-1), force, paddle.sum(atom_virial, axis=1),
                   atom_virial]
    return main, startup, feeds, fetches, comm.widths if exchange else None


def freeze_paddle(data: dict, path: str) -> None:
    """Write `path` (.json, the program + metadata + model.dp) and the .pdiparams beside it;
    both appear at once (written under temporary names, then renamed, .pdiparams first)."""
    if not str(path).endswith(".json"):
        raise ValueError(f"a Paddle model is NAME.json (+ NAME.pdiparams), got {path}")
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    paddle = _paddle()
    paddle.enable_static()
    try:
        with warnings.catch_warnings():  # Paddle's static operators ask Values for a place
            warnings.filterwarnings("ignore", message=".*'place' interface for pir")
            main, startup, feeds, fetches, widths = build_program(data)
        exe = paddle.static.Executor(paddle.CPUPlace())
        with tempfile.TemporaryDirectory(dir=folder, prefix=".tmp-paddle-") as tmp:
            prefix = os.path.join(tmp, "model")
            scope = paddle.static.Scope()
            with paddle.static.scope_guard(scope):
                exe.run(startup)
                paddle.static.save_inference_model(prefix, feeds, fetches, exe, program=main)
            dp = os.path.join(tmp, "model.dp")
            save_dp(data, dp)
            with open(prefix + ".json") as f:
                program = json.load(f)
            with open(dp, "rb") as f:
                program[KEY] = {"metadata.json": json.dumps(metadata(data, widths)),
                                "model.dp": base64.b64encode(f.read()).decode("ascii")}
            with open(prefix + ".json", "w") as f:
                json.dump(program, f)
            os.replace(prefix + ".pdiparams", path[: -len(".json")] + ".pdiparams")
            os.replace(prefix + ".json", path)
    finally:
        paddle.disable_static()


def _own_part(path: str) -> dict:
    try:
        with open(path) as f:
            program = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelFileError(f"cannot read {path}: not a Paddle model .json ({e})") from None
    if not isinstance(program, dict) or KEY not in program:
        raise ModelFileError(f"{path}: a .json without deepmd_md's model (not frozen by "
                             "`dpmd freeze -o NAME.json`)")
    return program[KEY]


def read_metadata(path: str) -> dict:
    return json.loads(_own_part(path)["metadata.json"])


def read_paddle(path: str) -> dict:
    """ModelData of a frozen .json (the .dp it carries; needs no Paddle)."""
    own = _own_part(path)
    with tempfile.TemporaryDirectory() as tmp:
        dp = os.path.join(tmp, "model.dp")
        with open(dp, "wb") as f:
            f.write(base64.b64decode(own["model.dp"]))
        return load_dp(dp)


class Predictor:
    """A frozen .json run by Paddle Inference from Python (the C++ backend's route):
    `lower(ext_coord, ext_atype, nlist, mapping)` frame by frame, NumPy in and out."""

    def __init__(self, path: str):
        pi = _paddle().inference

        self.metadata = read_metadata(path)
        from deepmd_md.backends.paddle.ops import load_ops

        # programs of message-passing (exchange) and compressed models call our operators
        load_ops(required="exchange" in self.metadata)
        params = path[: -len(".json")] + ".pdiparams"
        if not os.path.isfile(params):
            raise ModelFileError(f"{path}: its weights {params} are missing")
        cfg = pi.Config(path, params)
        cfg.disable_mkldnn()  # oneDNN kernels change fp64 results and thread counts
        cfg.disable_glog_info()
        cfg.set_cpu_math_library_num_threads(1)
        self._pred = pi.create_predictor(cfg)
        self._inputs = self._pred.get_input_names()

    def lower(self, ext_coord, ext_atype, nlist, mapping=None) -> dict:
        """ext_coord [nf, nall, 3], ext_atype [nf, nall], nlist [nf, nloc, *] raw (any order,
        -1 padded), mapping [nf, nall] -> the five outputs, frame by frame."""
        outs = []
        for f in range(ext_coord.shape[0]):
            vals = {INPUTS[0]: np.ascontiguousarray(ext_coord[f:f + 1], dtype=np.float64),
                    INPUTS[1]: np.ascontiguousarray(ext_atype[f:f + 1], dtype=np.int64)}
            if self.metadata.get("blocked"):  # as the C++ core builds them
                vals.update(self._blocked(vals[INPUTS[0]], vals[INPUTS[1]], nlist[f:f + 1]))
            else:
                vals[INPUTS[2]] = np.ascontiguousarray(nlist[f:f + 1], dtype=np.int64)
                if mapping is not None:
                    vals[INPUTS[3]] = np.ascontiguousarray(mapping[f:f + 1], dtype=np.int64)
                vals[INPUTS[4]] = np.zeros(1, np.int64)  # exchange by mapping, in this process
                vals[INPUTS[5]] = np.ones(nlist.shape[1:2], np.float64)[None]
            for name in self._inputs:
                h = self._pred.get_input_handle(name)
                h.reshape(list(vals[name].shape))
                h.copy_from_cpu(vals[name])
            self._pred.run()
            names = self._pred.get_output_names()
            outs.append({k: self._pred.get_output_handle(n).copy_to_cpu()
                         for k, n in zip(OUTPUT_NAMES, names, strict=True)})
        return {k: np.concatenate([o[k] for o in outs]) for k in OUTPUT_NAMES}

    def _blocked(self, ext, eatype, raw) -> dict:
        from deepmd_md.model.env import format_nlist
        from deepmd_md.model.frames import blocked_inputs

        meta = self.metadata
        nloc = raw.shape[1]
        nl = format_nlist(ext, eatype, np.asarray(raw, dtype=np.int64), meta["rcut"],
                          meta["sel"])
        nls, center = blocked_inputs(nl, eatype[:, :nloc], meta["sel"])
        out = {f"nlist_{t}": np.ascontiguousarray(x, dtype=np.int64) for t, x in enumerate(nls)}
        out |= {f"center_{t}": np.ascontiguousarray(x, dtype=np.int64)
                for t, x in enumerate(center)}
        return out
