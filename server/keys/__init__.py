"""Signing keys: generation, encryption at rest, the in-memory key ring and the JWKS."""
