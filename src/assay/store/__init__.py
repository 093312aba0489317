"""Content-addressed object storage: hashing, the object store interface, the packing store over raw backends."""

from assay.store.backend import Backend, LocalBackend, MemoryBackend
from assay.store.base import ObjectStore, StoredObject
from assay.store.hashing import HASH_HEX_LEN, hash_bytes, hash_file, is_oid
from assay.store.local import LocalObjectStore
from assay.store.packing import PackingStore

__all__ = [
    "Backend",
    "HASH_HEX_LEN",
    "LocalBackend",
    "LocalObjectStore",
    "MemoryBackend",
    "ObjectStore",
    "PackingStore",
    "StoredObject",
    "hash_bytes",
    "hash_file",
    "is_oid",
]
