"""Images: references, manifests, configs, import/export (issue 3, in progress)."""
