"""training/tensorboard: scalar event files written with TensorBoard's own writer (no torch or
TensorFlow needed, so the JAX backend writes them too).

Layout, as Keras writes it so that TensorBoard draws train and validation on one chart:
  LOGDIR/train/events.out.tfevents.*       loss, rmse, rmse_e, rmse_f[, rmse_v], lr
  LOGDIR/validation/events.out.tfevents.*  rmse, rmse_e, rmse_f[, rmse_v]
Read back with tensorboard.backend.event_processing.event_accumulator.EventAccumulator.
"""

from __future__ import annotations

import math
import os
import time

from deepmd_md.errors import ConfigError


class ScalarWriter:
    """Scalars to the event files under `logdir` (one sub-folder per run: train, validation)."""

    def __init__(self, logdir: str):
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as e:
            raise ConfigError(f"'training/tensorboard' needs the tensorboard package ({e}); "
                              "pip install 'deepmd-md[tensorboard]' or set it to false") from None
        self._event, self._summary, self._cls = event_pb2.Event, summary_pb2.Summary, EventFileWriter
        self.logdir = logdir
        self._writers: dict = {}

    def _writer(self, run: str):
        w = self._writers.get(run)
        if w is None:
            path = os.path.join(self.logdir, run)
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create the TensorBoard folder {path}: "
                                  f"{e.strerror}") from None
            w = self._writers[run] = self._cls(path)
        return w

    def scalars(self, run: str, step: int, values: dict) -> None:
        """values: tag -> float; NaN (a term without labels) is left out, as lcurve's nan."""
        vals = [self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()
                if v is not None and math.isfinite(float(v))]
        if vals:
            self._writer(run).add_event(self._event(wall_time=time.time(), step=int(step),
                                                    summary=self._summary(value=vals)))

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()
