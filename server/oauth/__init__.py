"""Authlib wiring: the authorization server, grants, tokens and metadata."""
