"""Compose projects (the Compose Specification) made real through the engine."""
