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
        top, head = _git(cwd, "rev-parse", "--show-toplevel", "HEAD").splitlines()  # one git process, not two
        status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    return {"git_commit": head, "dirty": bool(status), "path": top}


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10)
    return out.stdout.strip()


def _git_config(cwd: Path, *keys: str) -> dict[str, str]:
    """The values of git config ``keys`` that are set (one ``git config --get-regexp``)."""
    pattern = "^(" + "|".join(k.replace(".", "[.]") for k in keys) + ")$"
    out = subprocess.run(["git", "config", "--get-regexp", pattern], cwd=cwd, capture_output=True, text=True,
                         timeout=10)
    if out.returncode not in (0, 1):  # 1: none is set
        raise subprocess.CalledProcessError(out.returncode, out.args)
    pairs = (line.partition(" ") for line in out.stdout.splitlines())
    return {k.lower(): v.strip() for k, _, v in pairs}


def default_author(cwd: Path) -> str:
    env = os.environ.get("ASSAY_AUTHOR")
    if env:
        return env
    try:
        found = _git_config(cwd, "user.name", "user.email")  # one git process, not two
        name, email = found.get("user.name", ""), found.get("user.email", "")
        if name:
            return f"{name} <{email}>" if email else name
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
