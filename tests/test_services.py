"""`python -m dlbasics.tracking.services` on bad settings: one line naming the variable, exit 1, and
nothing started or written (the stack itself is tested in test_stack.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("var, value", [
    ("DLBASICS_PG_PORT", "99999"),
    ("DLBASICS_S3_PORT", "s3"),
    ("DLBASICS_MLFLOW_WORKERS", "0"),
    ("DLBASICS_MLFLOW_AUTH_CACHE_S", "-1"),
])
def test_a_bad_setting_is_one_line_before_anything_starts(var, value, tmp_path):
    state = tmp_path / ".services"
    proc = subprocess.run([sys.executable, "-m", "dlbasics.tracking.services", "up", "--state",
                           str(state)], env={**os.environ, var: value},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and var in lines[0] and repr(value) in lines[0], proc.stderr
    assert proc.stdout == ""
    assert not state.exists()
