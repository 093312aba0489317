"""The git commit of the working code, recorded in every assay commit."""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path
from typing import Any


def code_reference(cwd: Path) -> dict[str, Any] | None:
    """``{"git_commit", "dirty", "path"}`` of the git work tree around ``cwd``, or None outside git."""
    try:
        top = _git(cwd, "rev-parse", "--show-toplevel")
        head = _git(cwd, "rev-parse", "HEAD")
        status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"git_commit": head, "dirty": bool(status), "path": top}


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10)
    return out.stdout.strip()


def default_author(cwd: Path) -> str:
    env = os.environ.get("ASSAY_AUTHOR")
    if env:
        return env
    try:
        name = _git(cwd, "config", "user.name")
        email = _git(cwd, "config", "user.email")
        if name:
            return f"{name} <{email}>" if email else name
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
