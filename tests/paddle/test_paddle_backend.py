"""Paddle = the NumPy reference (BackendMixin, every descriptor of tests/test_backends.py),
through the adapter (eager paddle.grad)."""

from __future__ import annotations

import pytest
from mixins import AdapterBackend

pytest.importorskip("paddle")


class TestPaddle(AdapterBackend):
    adapter_name = "paddle"
