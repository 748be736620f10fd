"""Importers: real utility formats -> the messages a utility would send, and canonical CSV."""
