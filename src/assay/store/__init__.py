"""Content-addressed object storage: hashing, the object store interface and its local implementation."""

from assay.store.base import ObjectStore, StoredObject
from assay.store.hashing import HASH_HEX_LEN, hash_bytes, hash_file, is_oid
from assay.store.local import LocalObjectStore

__all__ = [
    "HASH_HEX_LEN",
    "LocalObjectStore",
    "ObjectStore",
    "StoredObject",
    "hash_bytes",
    "hash_file",
    "is_oid",
]
