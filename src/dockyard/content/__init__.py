"""Content store: blobs by sha256 digest, atomic and verified ingest, garbage collection."""

from dockyard.content.store import ContentStore, Descriptor, DigestMismatch, Writer, check_digest

__all__ = ["ContentStore", "Descriptor", "DigestMismatch", "Writer", "check_digest"]
