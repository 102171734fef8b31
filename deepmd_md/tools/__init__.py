"""The analysis commands' logic (detail files, model deviation, energy-bias refit, plots), kept
out of the CLI modules so that tests and scripts call the same functions."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

from deepmd_md.errors import DPMDError


class ToolError(DPMDError):
    """Bad input to an analysis command (files, models, options)."""


@contextmanager
def staged_outputs():
    """Write several output files all-or-nothing.

    Yields `stage(path) -> tmp_path`: the caller writes `tmp_path` (same folder, hidden name).
    On normal exit every staged file is renamed onto its path; on any exception the temporaries
    are removed and no output path is touched, so a failed command leaves no partial files.
    """
    staged: list[tuple[str, str]] = []

    def stage(path: str) -> str:
        path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise ToolError(f"cannot write {path}: folder {d} does not exist")
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
        os.close(fd)
        staged.append((tmp, path))
        return tmp

    try:
        yield stage
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    umask = os.umask(0)
    os.umask(umask)
    for tmp, path in staged:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
