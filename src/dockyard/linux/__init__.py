"""Kernel glue: ctypes wrappers for syscalls, capabilities and seccomp; no policy."""
