"""What the API and the workers share: settings, database, Redis, crypto, security, rules."""
