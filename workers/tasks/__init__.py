"""Task modules, one per domain; task names are a public API (`workers.<domain>.<verb>`)."""
