"""Remotes: clone, fetch, push and pull between repositories, moving only the objects the other side lacks."""

from assay.remote.remotes import (
    FetchResult,
    PushResult,
    add_remote,
    clone,
    fetch,
    pull,
    push,
    push_tags,
    read_remotes,
    remove_remote,
)
from assay.remote.transfer import TransferReport, missing, send

__all__ = ["FetchResult", "PushResult", "TransferReport", "add_remote", "clone", "fetch", "missing", "pull", "push",
           "push_tags", "read_remotes", "remove_remote", "send"]
