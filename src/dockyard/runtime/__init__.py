"""dockyard's own OCI runtime: one container from one bundle, runc's command line."""
