"""Compatibility APIs: the earlier API documents' paths and fields over the same services
(API.md, "Compatibility APIs for existing clients")."""
