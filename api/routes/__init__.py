"""Route modules, one per domain, each exposing `router`."""
