"""Adam on trees of arrays (array API): one implementation for every backend, and moments that
live in a framework-neutral checkpoint."""

from __future__ import annotations

from deepmd_md.model.xp import array_namespace
from deepmd_md.tree import tree_map

B1, B2, EPS = 0.9, 0.999, 1e-8


def adam_init(params):
    return {"m": tree_map(_zeros, params), "v": tree_map(_zeros, params), "t": 0}


def _zeros(x):
    return array_namespace(x).zeros_like(x)


def clip_by_global_norm(grads: list, max_norm: float | None, frozen: list | None = None) -> list:
    """Gradients scaled by min(1, max_norm / (|g| + 1e-6)), |g| the 2-norm over every trainable
    leaf (training/gradient_max_norm; torch.nn.utils.clip_grad_norm_'s documented rule, which
    DeePMD-kit's PyTorch training applies). grads: list of arrays; frozen leaves do not count."""
    if max_norm is None:
        return grads
    xp = array_namespace(grads[0])
    live = [g for i, g in enumerate(grads) if not (frozen and frozen[i])]
    total = xp.sqrt(sum(xp.sum(g * g) for g in live))
    coef = xp.clip(max_norm / (total + 1e-6), max=1.0)
    return [g * coef for g in grads]


def adam_update(params, grads, state, lr: float, frozen=None, max_norm: float | None = None):
    """One Adam step; returns (new params, new state). Pure: nothing is updated in place.

    frozen: optional tree of bools (True = not trainable); those leaves keep value and moments.
    max_norm: clip the gradients to this global norm first (clip_by_global_norm).
    """
    lr_c1, c2 = adam_scalars(state["t"] + 1, lr)
    if max_norm is not None:
        leaves, fz = _leaves(grads), (_leaves(frozen) if frozen is not None else None)
        it = iter(clip_by_global_norm(leaves, max_norm, fz))
        grads = tree_map(lambda _: next(it), grads)

    def leaf(p, g, m, v):
        return adam_leaf(p, g, m, v, lr_c1, c2)

    if frozen is not None:
        step = leaf

        def leaf(p, g, m, v, fz):  # noqa: F811
            return (p, m, v) if fz else step(p, g, m, v)

        out = _zip_map(leaf, params, grads, state["m"], state["v"], frozen)
    else:
        out = _zip_map(leaf, params, grads, state["m"], state["v"])
    return (_pick(out, 0), {"m": _pick(out, 1), "v": _pick(out, 2), "t": state["t"] + 1})


def adam_scalars(t: int, lr: float) -> tuple[float, float]:
    """(lr / (1 - B1^t), 1 - B2^t): the step-dependent scalars of Adam step t (1-based)."""
    return lr / (1.0 - B1**t), 1.0 - B2**t


def adam_leaf(p, g, m, v, lr_c1, c2):
    """One Adam update of one array: -> (p, m, v). lr_c1, c2 from adam_scalars (floats or 0-d
    arrays, so that a compiled step need not bake the step number in)."""
    xp = array_namespace(p)
    m = B1 * m + (1.0 - B1) * g
    v = B2 * v + (1.0 - B2) * g * g
    return p - lr_c1 * m / (xp.sqrt(v / c2) + EPS), m, v


def frozen_mask(config: dict, params: dict) -> dict:
    """True for the leaves that `trainable: false` freezes (descriptor or fitting; a list of
    bools for the fitting freezes per layer)."""
    from deepmd_md.tree import tree_map

    d_fixed = not config["descriptor"].get("trainable", True)
    out = {"descriptor": tree_map(lambda _: d_fixed, params["descriptor"])}
    tr = config["fitting_net"].get("trainable", True)
    fit = {}
    for name, net in params["fitting"].items():
        layers = []
        for i, layer in enumerate(net["layers"]):
            fixed = not (tr[i] if isinstance(tr, list) and i < len(tr) else bool(tr))
            layers.append({k: fixed for k in layer})
        fit[name] = {"layers": layers}
    out["fitting"] = fit
    return out


def _leaves(tree) -> list:
    out: list = []
    tree_map(out.append, tree)
    return out


def _zip_map(fn, *trees):
    t0 = trees[0]
    if isinstance(t0, dict):
        return {k: _zip_map(fn, *(t[k] for t in trees)) for k in t0}
    if isinstance(t0, list):
        return [_zip_map(fn, *(t[i] for t in trees)) for i in range(len(t0))]
    return fn(*trees)


def _pick(tree, i):
    if isinstance(tree, dict):
        return {k: _pick(v, i) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_pick(v, i) for v in tree]
    return tree[i]
