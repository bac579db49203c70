"""Helpers for tests, benchmarks and demos: busybox rootfs and bundles."""
