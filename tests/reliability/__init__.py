"""The reliability suite: the gateway under abuse, bounded (docs/reliability.md)."""
