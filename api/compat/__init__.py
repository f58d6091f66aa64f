"""Routes that serve the service's earlier API documents (API.md, "Compatibility APIs")."""
