"""Rewrites of traced aten graphs (make_fx) before Inductor compiles them: the `.pt2` freeze
and the compiled training step. Each keeps the numbers to rounding (tests/test_pt2.py)."""

from __future__ import annotations

import os

import torch


def fast_tanh(gm) -> int:
    """Rewrite every aten.tanh in the traced graph as 1 - 2 / (exp(2x) + 1); returns the count.

    Why: the compiled kernels' fp64 tanh (Sleef, 1-ulp) costs ~8 ns an element here against ~3
    for this form, and a water step takes ~175 tanh per neighbor pair. The backward is untouched:
    autograd traced tanh's derivative as tanh_backward(grad, y), which reads the rewritten y, so
    no extra terms enter the backward (differentiating the formula itself did cost more than it
    saved). Error: |dy| <= 4e-16 absolute (relative 3e-11 as x -> 0, where y ~ x); x -> +-inf
    gives exactly +-1 and NaN stays NaN."""
    if os.environ.get("DPMD_MD_EXACT_TANH") == "1":
        return 0
    aten = torch.ops.aten
    graph, n = gm.graph, 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not aten.tanh.default:
            continue
        with graph.inserting_before(node):
            e = graph.call_function(aten.exp.default, (graph.call_function(
                aten.mul.Tensor, (node.args[0], 2.0)),))
            q = graph.call_function(aten.reciprocal.default, (graph.call_function(
                aten.add.Tensor, (e, 1.0)),))
            y = graph.call_function(aten.add.Tensor, (graph.call_function(
                aten.mul.Tensor, (q, -2.0)), 1.0))
        node.replace_all_uses_with(y)
        graph.erase_node(node)
        n += 1
    gm.recompile()
    return n
