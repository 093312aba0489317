"""Catalogs from URLs: ``open_catalog(url)``, the schemes it knows, and credentials kept out of config files.

==============================================  =========================================================
``/path/catalog.db``, ``file:///path/c.db``      SQLite file, stdlib ``sqlite3`` (the default repository)
``sqlite:////abs/path.db``, ``sqlite:///rel.db``  the same (SQLAlchemy's spelling)
``postgresql://host:5432/db?schema=repo1``       PostgreSQL through SQLAlchemy; ``+psycopg`` etc. name a driver
==============================================  =========================================================

``?prefix=NAME`` (any database) prefixes the table names, ``?schema=NAME`` (PostgreSQL) puts the tables in
their own schema: either keeps several repositories apart in one database.

Credentials never go into a repository's config: ``public()`` drops user and password. When a URL has none,
they come from ``ASSAY_CATALOG_URL`` (the same URL with ``user:password@``; it must name the same database),
or, for PostgreSQL, from libpq's own ``PGUSER``, ``PGPASSWORD``, ``PGPASSFILE`` or ``~/.pgpass``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from assay.errors import InputError
from assay.repo.catalog.migrations import check_identifier

if TYPE_CHECKING:
    from assay.repo.catalog.base import Catalog

ENV_URL = "ASSAY_CATALOG_URL"


@dataclass(frozen=True)
class CatalogURL:
    """A parsed catalog URL. ``backend`` is the registry key: ``"sqlite"``, ``"postgresql"``, ..."""

    backend: str
    scheme: str  # as written: "sqlite", "postgresql+psycopg", ...
    host: str = ""  # host[:port] of a server
    database: str = ""  # a server's database, or a SQLite file's path
    user: str = ""
    password: str = ""
    schema: str | None = None
    prefix: str = ""
    query: tuple[tuple[str, str], ...] = ()  # other options, passed to the driver

    @property
    def path(self) -> str:
        return self.database or ":memory:"

    def _query(self, *, ours: bool) -> str:
        q = list(self.query)
        if ours:
            q += [("schema", self.schema)] if self.schema else []
            q += [("prefix", self.prefix)] if self.prefix else []
        return "?" + urlencode(q) if q else ""

    def _render(self, auth: str, ours: bool) -> str:
        if self.backend == "sqlite":
            return f"{self.scheme}:///{self.database}{self._query(ours=ours)}"
        return f"{self.scheme}://{auth}{self.host}/{self.database}{self._query(ours=ours)}"

    def public(self) -> str:
        """The URL without user or password: what a config file and ``Catalog.url`` hold."""
        return self._render("", True)

    def connect_url(self) -> str:
        """The URL for the driver: with credentials, without assay's own options."""
        auth = f"{self.user}:{self.password}@" if self.password else f"{self.user}@" if self.user else ""
        return self._render(auth, False)

    def same_place(self, other: CatalogURL) -> bool:
        fields = ("backend", "host", "database", "schema", "prefix")
        return all(getattr(self, f) == getattr(other, f) for f in fields)


def parse_catalog_url(url: str) -> CatalogURL:
    """Parse a catalog URL (or a plain path to a SQLite file); InputError for what cannot be one."""
    if "://" not in url:
        return CatalogURL("sqlite", "sqlite", database=url)
    scheme, _, rest = url.partition("://")
    backend = "sqlite" if scheme == "file" else scheme.split("+", 1)[0].lower()
    if backend not in _OPENERS:
        raise InputError(f"unknown catalog URL scheme {scheme!r} in {_hide(url)}; assay opens catalogs at "
                         f"{', '.join(s + '://' for s in sorted(_OPENERS))} or a path to a SQLite file")
    body, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    schema, prefix = options.pop("schema", None), options.pop("prefix", "")
    if schema is not None:
        check_identifier(schema, "schema")
        if backend == "sqlite":
            raise InputError("a SQLite catalog is one file per repository: ?schema= is for PostgreSQL "
                             "(use ?prefix= to share one file)")
    if prefix:
        check_identifier(prefix, "prefix")
    extra = tuple(options.items())
    if backend == "sqlite":
        path = body if scheme == "file" else body[1:] if body.startswith("/") else body  # file:///a: "/a"
        return CatalogURL("sqlite", "sqlite", database=path if path != ":memory:" else "", schema=None,
                          prefix=prefix, query=extra)
    auth, _, host = body.rpartition("@") if "@" in body.split("/", 1)[0] else ("", "", body)
    host, _, database = host.partition("/")
    user, _, password = auth.partition(":")
    return CatalogURL(backend, scheme, host=host, database=database, user=user, password=password,
                      schema=schema, prefix=prefix, query=extra)


def _hide(url: str) -> str:
    try:
        return parse_catalog_url(url).public() if "://" in url and "@" in url else url
    except InputError:
        return url.split("://", 1)[0] + "://..."


def config_url(url: str) -> str:
    """What to write in a repository's config for ``url``: the URL without user and password."""
    if "{assay_dir}" in url or "://" not in url:
        return url
    return parse_catalog_url(url).public()


def with_credentials(url: CatalogURL) -> CatalogURL:
    """``url`` with user and password from ``ASSAY_CATALOG_URL`` when it has none and that names the same place."""
    given = os.environ.get(ENV_URL)
    if url.user or url.password or not given:
        return url
    env = parse_catalog_url(given)
    if not env.same_place(url):
        raise InputError(f"{ENV_URL} names {env.public()}, but this repository's catalog is {url.public()}; "
                         f"set {ENV_URL} to this catalog's URL with its user and password (or unset it)")
    return replace(url, user=env.user, password=env.password)


Opener = Callable[[CatalogURL], "Catalog"]


def _open_sqlite(url: CatalogURL) -> Catalog:
    from assay.repo.catalog.sqlite import SqliteCatalog

    return SqliteCatalog(url.path, url=url.public(), prefix=url.prefix)


def _open_sqlalchemy(url: CatalogURL) -> Catalog:
    from assay.repo.catalog.sql import SqlCatalog  # SQLAlchemy is imported only for a server's catalog

    return SqlCatalog(url)


_OPENERS: dict[str, Opener] = {"sqlite": _open_sqlite, "postgresql": _open_sqlalchemy}


def register_catalog_scheme(backend: str, opener: Opener) -> None:
    """Make ``open_catalog`` open URLs of ``backend://...`` (or ``backend+driver://``) with ``opener``."""
    _OPENERS[backend] = opener


def open_catalog(url: str) -> Catalog:
    """The catalog at ``url`` (see the module's table), made or upgraded to this assay's schema version."""
    parsed = parse_catalog_url(url)
    return _OPENERS[parsed.backend](parsed)
