"""Paddle backend: namespace shim (xp), adapter, static-program tracer (trace) and freezer.

Every module here that needs Paddle gets it from `import_paddle()`, which refuses, with a clear
error instead of a crash, the one import order that kills the process here: TensorFlow first.
"""

from __future__ import annotations

import os
import sys
import warnings


def import_paddle():
    """The paddle module (imported now if needed); ConfigError when TensorFlow came first."""
    if "paddle" not in sys.modules and "tensorflow" in sys.modules:
        from deepmd_md.errors import ConfigError

        raise ConfigError("Paddle cannot be imported after TensorFlow in one process (their "
                          "protobuf symbols clash and the process crashes): import paddle "
                          "first, or run the two frameworks in separate processes")
    os.environ.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ info lines (executor, IR)
    with warnings.catch_warnings():  # its C++-extension helper warns about ccache on import
        warnings.filterwarnings("ignore", message="No ccache found")
        import paddle
    return paddle
