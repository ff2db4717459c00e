"""Shared fixtures."""

from __future__ import annotations

import signal
from typing import Any

import pytest


def _take_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its own KeyboardInterrupt


@pytest.fixture
def ctrl_c_able() -> dict[str, Any]:
    """``subprocess.Popen`` keywords for a child that takes Ctrl-C (SIGINT) as a terminal's
    foreground command does, even when the tests themselves were started in the background by a
    script (``make test &``): such a shell starts them with Ctrl-C ignored, children inherit
    that, and evoprune leaves an ignored signal ignored."""
    return {"preexec_fn": _take_ctrl_c}
