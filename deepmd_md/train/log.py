"""What a training run says: information on stdout, warnings on stderr, everything in the
`-l/--log-path` file, each warning once.

Lines go through tqdm.write so that they never tear the progress bar. A "step" line (the
RMSEs every disp_freq steps) goes to the console only when there is no progress bar: the bar
already shows them, the log file always gets them.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

from deepmd_md.errors import ConfigError

LEVELS = {"DEBUG": logging.DEBUG, "3": logging.DEBUG, "INFO": logging.INFO, "2": logging.INFO,
          "WARNING": logging.WARNING, "1": logging.WARNING, "ERROR": logging.ERROR,
          "0": logging.ERROR}  # DeePMD-kit's -v/--log-level names and numbers


def parse_level(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    try:
        return LEVELS[str(level).upper()]
    except KeyError:
        raise ConfigError(f"unknown log level {level!r}; use one of "
                          "DEBUG, INFO, WARNING, ERROR (or 3, 2, 1, 0)") from None


class _TqdmHandler(logging.Handler):
    def __init__(self, stream, lo: int, hi: int, step_lines: bool):
        super().__init__()
        self.stream, self.lo, self.hi, self.step_lines = stream, lo, hi, step_lines

    def emit(self, record):
        if not (self.lo <= record.levelno < self.hi):
            return
        if getattr(record, "step_line", False) and not self.step_lines:
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # a closed console must not stop a training run
            self.handleError(record)


class RunLog:
    """Console + optional log file for one run; use as a context manager.

    log_path: file for every message of `level` and above (None: console only);
    step_lines_on_console: whether step lines (info(..., step=True)) reach stdout.
    """

    def __init__(self, log_path: str | None = None, level: str | int = "INFO",
                 step_lines_on_console: bool = True, append: bool = False):
        self.level = parse_level(level)
        self.log_path = log_path
        self._warned: set = set()
        self.logger = logging.getLogger("deepmd_md.run")
        self.logger.setLevel(self.level)
        self.logger.propagate = False
        self.handlers = [
            _TqdmHandler(sys.stdout, logging.DEBUG, logging.WARNING, step_lines_on_console),
            _TqdmHandler(sys.stderr, logging.WARNING, logging.CRITICAL + 1, True),
        ]
        self.handlers[1].setFormatter(logging.Formatter("WARNING: %(message)s"))
        if log_path:
            try:
                fh = logging.FileHandler(log_path, mode="a" if append else "w",
                                         encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"cannot write the log file {log_path}: {e.strerror}") from None
            fh.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-7s %(message)s"))
            self.handlers.append(fh)
        for h in self.handlers:
            self.logger.addHandler(h)

    def info(self, msg: str, step: bool = False) -> None:
        self.logger.info(msg, extra={"step_line": step})

    def debug(self, msg: str) -> None:
        self.logger.debug(msg)

    def warn_once(self, key, msg: str) -> None:
        """Warn about `key` the first time only (stderr and the log file)."""
        if key in self._warned:
            return
        self._warned.add(key)
        self.logger.warning(msg)

    def close(self) -> None:
        for h in self.handlers:
            self.logger.removeHandler(h)
            h.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
