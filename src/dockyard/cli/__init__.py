"""The ``dockyard`` command: Docker's verbs, flags, output and exit codes."""
