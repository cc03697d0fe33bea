"""pytest fixtures that start a real docker-registry (filled in by the registry work)."""
