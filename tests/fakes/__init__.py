"""Fake upstream servers (LLM providers, Apple, Linux.do, plug-in-api) on loopback."""
