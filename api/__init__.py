"""The HTTP front end: authenticates, checks quotas, enqueues work and relays streams."""
