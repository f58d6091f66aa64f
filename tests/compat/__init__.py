"""Compatibility APIs, each tested as the client its document describes."""
