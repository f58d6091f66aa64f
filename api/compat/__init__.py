"""Compatibility APIs: earlier API documents' paths and fields over the same services."""
