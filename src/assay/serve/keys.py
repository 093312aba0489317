"""API keys for served models, stored hashed beside the repository's catalog (``.assay/serve/keys.db``).

A key is ``assay_`` and 43 URL-safe characters (32 random bytes); only its SHA-256 is stored, with the key's
name, the model it opens and whether it was revoked. Since the token is random, a plain hash suffices (no salt
or slow hash: nothing to guess). The key itself is shown once, when created, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import InputError, KeyRefused, RefExists
from assay.repo.revisions import DATASET_RE
from assay.store.fs import ClosedAtExit

PREFIX = "assay_"
SCHEMA = """CREATE TABLE IF NOT EXISTS keys (
    model TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created REAL NOT NULL, revoked REAL,
    PRIMARY KEY (model, name))"""


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never the key itself."""

    model: str
    name: str
    created: float
    revoked: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "name": self.name, "created": self.created, "revoked": self.revoked}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def keys_path(assay_dir: Path) -> Path:
    return assay_dir / "serve" / "keys.db"


class KeyStore:
    """The keys of one repository (``assay_dir`` is its ``.assay`` folder). Each write is one SQLite transaction."""

    def __init__(self, assay_dir: Path):
        path = keys_path(assay_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False,
                                   factory=ClosedAtExit)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, model: str, name: str) -> str:
        """A new key named ``name`` for ``model``; returns the key (shown once: only its hash is kept)."""
        for what, value in (("model", model), ("key", name)):
            if not DATASET_RE.match(value):
                raise InputError(f"{value!r} is not a valid {what} name: use letters, digits, '.', '_' and '-'")
        token = PREFIX + secrets.token_urlsafe(32)
        try:
            self._db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, NULL)", (model, name, digest(token), time.time()))
        except sqlite3.IntegrityError as e:
            raise RefExists(f"model {model!r} already has a key named {name!r}; choose another name, or revoke "
                            f"it with `assay serve keys revoke {model} --name {name}`") from e
        return token

    def list(self, model: str | None = None) -> list[KeyInfo]:
        sql = "SELECT model, name, created, revoked FROM keys" + (" WHERE model = ?" if model else "")
        rows = self._db.execute(sql + " ORDER BY model, name", (model,) if model else ()).fetchall()
        return [KeyInfo(*r) for r in rows]

    def revoke(self, model: str, name: str) -> KeyInfo:
        cur = self._db.execute("UPDATE keys SET revoked = ? WHERE model = ? AND name = ? AND revoked IS NULL",
                               (time.time(), model, name))
        if cur.rowcount == 0 and not any(k.name == name for k in self.list(model)):
            raise InputError(f"model {model!r} has no key named {name!r}; see `assay serve keys list {model}`")
        return next(k for k in self.list(model) if k.name == name)

    def check(self, model: str, authorization: str | None) -> str:
        """The name of the key in an ``Authorization: Bearer`` header, if it opens ``model``; KeyRefused if not."""
        if not authorization:
            raise KeyRefused("this server needs an API key: send `Authorization: Bearer KEY` (create one with "
                             f"`assay serve keys create {model}`)", 401)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise KeyRefused("the Authorization header must be `Bearer KEY`", 401)
        row = self._db.execute("SELECT model, name, revoked FROM keys WHERE hash = ?",
                               (digest(token.strip()),)).fetchone()
        if row is None:
            raise KeyRefused("this API key is not known here", 401)
        if row[2] is not None:
            raise KeyRefused(f"the API key {row[1]!r} was revoked", 403)
        if row[0] != model:
            raise KeyRefused(f"the API key {row[1]!r} is for another model, not {model!r}", 403)
        return str(row[1])
