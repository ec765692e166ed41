"""Authlib's endpoints beside the token endpoint: revocation, introspection, userinfo, logout."""
