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


def _services(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlbasics.tracking.services", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("what, make, says", [
    ("none", lambda d: None, "restore: name the archive: make services-restore ARCHIVE="),
    ("missing", lambda d: d / "nope.tar.gz", "is not a file; name a backup archive"),
    ("not an archive", lambda d: (d / "x.tar.gz").write_text("x") and d / "x.tar.gz",
     "(not a gzip file); name an archive written by `make services-backup`"),
    ("another archive", lambda d: _tar(d / "other.tar.gz"),
     "is not a backup of this stack (it lacks dlbasics-stack/credentials.env, "),
])
def test_a_bad_archive_to_restore_is_one_line_and_nothing_is_written(what, make, says, tmp_path):
    archive = make(tmp_path)
    proc = _services("restore", *([str(archive)] if archive else []), cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert not (tmp_path / ".services").exists()


def _tar(path):
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        tar.add(__file__, "notes/readme.txt")
    return path


def test_a_backup_with_no_stack_running_is_one_line(tmp_path):
    proc = _services("backup", str(tmp_path / "b.tar.gz"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"services: backup: no stack is running from {tmp_path / '.services'}; start it with "
        "`make services` first (pg_dump reads the running PostgreSQL)"]
    assert not (tmp_path / "b.tar.gz").exists()


def test_generated_secrets_never_start_with_a_dash(tmp_path, monkeypatch):
    """A secret starting with "-" is taken for an option by the docs' `dvc remote modify
    --local team secret_access_key "$AWS_SECRET_ACCESS_KEY"` (1 in 32 of token_urlsafe's)."""
    from dlbasics.tracking import services

    for key in services.SECRETS:
        monkeypatch.delenv(key, raising=False)
    firsts = set()
    for i in range(300):
        creds = services.credentials(tmp_path / str(i))
        firsts |= {v[0] for k, v in creds.items() if k != "AWS_ACCESS_KEY_ID"}
    assert "-" not in firsts and len(firsts) > 20  # random, but never a dash
    assert (tmp_path / "0" / "credentials.env").stat().st_mode & 0o077 == 0
