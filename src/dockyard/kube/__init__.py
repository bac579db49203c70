"""Kubernetes manifests out of the engine's containers and pods (``generate``)."""
