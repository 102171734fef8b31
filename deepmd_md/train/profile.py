"""training/profiling and training/enable_profiler: the framework's profiler over a few steps.

The window skips the run's first step (jit / Inductor compilation would dominate it) and
records the next ACTIVE steps. profiling writes a Chrome trace (JSON, chrome://tracing or
Perfetto) to profiling_file; enable_profiler leaves the profiler's own trace in
tensorboard_log_dir (torch: *.pt.trace.json; JAX: plugins/profile/*/*.xplane.pb).
"""

from __future__ import annotations

import glob
import gzip
import os
import shutil
import socket
import tempfile
import time

ACTIVE = 3


class StepProfiler:
    """Call before_step(step) and after_step(step) around every training step; close() at the
    end (writes the files). log: a RunLog."""

    def __init__(self, backend: str, tcfg: dict, start_step: int, numb_steps: int, log):
        self.backend, self.log = backend, log
        self.chrome = tcfg.get("profiling", False)
        self.chrome_file = tcfg.get("profiling_file", "timeline.json")
        self.tb = tcfg.get("enable_profiler", False)
        self.tb_dir = tcfg.get("tensorboard_log_dir", "log")
        self.on = self.chrome or self.tb
        self.first = start_step + 1
        self.last = min(self.first + ACTIVE, numb_steps) - 1  # inclusive
        self._prof = None
        self._tmp = None
        self._active = False
        if self.on and self.last < self.first:
            log.warn_once("profiling-short", "training/profiling and enable_profiler record "
                          "steps after the first; this run has too few steps, nothing is "
                          "recorded")
            self.on = False

    def before_step(self, step: int) -> None:
        if not self.on or step != self.first:
            return
        self._active = True
        if self.backend == "torch":
            import torch.profiler as tp

            self._prof = tp.profile(activities=[tp.ProfilerActivity.CPU], record_shapes=True)
            self._prof.__enter__()
        else:
            import jax

            self._tmp = tempfile.mkdtemp(prefix="dpmd-jaxprof-") if self.chrome else None
            jax.profiler.start_trace(self._tmp or self.tb_dir)

    def after_step(self, step: int) -> None:
        if self._active and step == self.last:
            self._stop()

    def _stop(self) -> None:
        self._active = False
        if self.backend == "torch":
            self._prof.__exit__(None, None, None)
            if self.chrome:
                self._prof.export_chrome_trace(self.chrome_file)
            if self.tb and self.chrome:  # a trace saves once: copy it, named as torch does
                os.makedirs(self.tb_dir, exist_ok=True)
                name = f"{socket.gethostname()}_{os.getpid()}.{time.time_ns()}.pt.trace.json"
                shutil.copyfile(self.chrome_file, os.path.join(self.tb_dir, name))
            elif self.tb:
                from torch.profiler import tensorboard_trace_handler

                tensorboard_trace_handler(self.tb_dir)(self._prof)
            self._prof = None
        else:
            import jax

            jax.profiler.stop_trace()
            if self._tmp is not None:
                traces = glob.glob(os.path.join(self._tmp, "plugins", "profile", "*",
                                                "*.trace.json.gz"))
                if traces:
                    with gzip.open(traces[0], "rb") as src, open(self.chrome_file, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                if self.tb:  # the same trace serves enable_profiler
                    shutil.copytree(os.path.join(self._tmp, "plugins"),
                                    os.path.join(self.tb_dir, "plugins"), dirs_exist_ok=True)
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
        what = []
        if self.chrome:
            what.append(f"Chrome trace {self.chrome_file}")
        if self.tb:
            what.append(f"profiler trace in {self.tb_dir}")
        self.log.info(f"profiled steps {self.first + 1}-{self.last + 1}: " + ", ".join(what))
        self.on = False

    def close(self) -> None:
        """Stop a window a run ended inside of (interrupted), writing what was recorded."""
        if self._active:
            self._stop()
