"""Clients: registration rules, secrets and the per-process client cache."""
