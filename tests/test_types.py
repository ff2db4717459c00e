"""The package ships ``py.typed``, so its annotations must check: mypy with the project's
configuration (``[tool.mypy]`` in pyproject.toml) reports no error."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (it comes with the dev extra: pip install -e '.[dev]')",
)
def test_the_package_type_checks():
    # the files to check come from the configuration; the cache is the repository's own
    # .mypy_cache (cold on a fresh clone: about 30 s, then a few)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"mypy found errors:\n{proc.stdout}{proc.stderr}"
