"""Python inference on frozen models and checkpoints."""

from deepmd_md.infer.deep_pot import DeepPot

__all__ = ["DeepPot"]
