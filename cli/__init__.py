"""Operator commands: `python -m cli run | migrate | ...`."""
