"""Snapshots: layers unpacked once and keyed by chain ID, overlay mounts, diffs."""
