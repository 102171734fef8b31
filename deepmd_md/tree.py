"""Nested dict/list trees of arrays (model parameters, optimizer moments): flatten and rebuild."""

from __future__ import annotations


def flatten(tree, prefix: str = "") -> dict:
    """{"a": {"b": [x, y]}} -> {"a/b/0": x, "a/b/1": y} (insertion order kept)."""
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}/"))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}/"))
    else:
        out[prefix[:-1]] = tree
    return out


def unflatten(flat: dict):
    """Inverse of flatten: path components that are all digits rebuild lists."""
    root: dict = {}
    for path, v in flat.items():
        node = root
        parts = path.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return _lists(root)


def _lists(node):
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[str(i)]) for i in range(len(node))]
    return {k: _lists(v) for k, v in node.items()}


def tree_map(fn, tree):
    """Apply fn to every leaf."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [tree_map(fn, v) for v in tree]
    return fn(tree)


def tree_map2(fn, a, b):
    """fn(a_leaf, b_leaf) over two trees of the same structure."""
    if isinstance(a, dict):
        return {k: tree_map2(fn, v, b[k]) for k, v in a.items()}
    if isinstance(a, list):
        return [tree_map2(fn, x, y) for x, y in zip(a, b, strict=True)]
    return fn(a, b)
