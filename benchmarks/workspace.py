"""Temporary copies of the project and the commands run in them: dvc, git, and the stages'
commands as dvc.yaml declares them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

DVC = str(Path(sys.executable).parent / "dvc")  # this interpreter's


def project_files(repo: Path) -> list[str]:
    """What a clone holds: the files git tracks (and untracked, unignored ones), without
    produced outputs (reports/, data/, dvc.lock)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=repo, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (repo / f).is_file()
            and not f.startswith(("reports/", "data/")) and f != "dvc.lock"]


def tool_env() -> dict[str, str]:
    """This interpreter's bin first on PATH (stages call plain `python`), no inherited store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = "dlbasics-bench", "bench@localhost"
    return env


def shell(env: dict[str, str], timeout_s: float) -> Callable[..., None]:
    """sh(*cmd, cwd=...): run a command in `env`, raise with its stderr's end when it fails, and
    stop it after `timeout_s` (TimeoutExpired)."""

    def sh(*cmd: str, cwd: Path) -> None:
        # Its own process group, so that a stopped run takes its stage processes with it.
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")

    return sh


def clean_copy(repo: Path, dest: Path, sh: Callable[..., None]) -> None:
    """The project's files (see project_files) copied to dest and committed there as `base`."""
    for rel in project_files(repo):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest / rel)
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "base", cwd=dest)


def stage_command(repo: Path, stage: str) -> str:
    """The shell command of a plain (not foreach) stage, read from the repo's dvc.yaml: run in a
    folder laid out as the repo is, it is what `dvc repro` runs."""
    import yaml

    cmd = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    cmd = " && ".join(cmd) if isinstance(cmd, list) else cmd
    if "${" in cmd:
        raise ValueError(f"dvc.yaml: stage {stage}'s cmd is templated ({cmd!r}): run it with "
                         f"`dvc repro --single-item {stage}` instead")
    return cmd
