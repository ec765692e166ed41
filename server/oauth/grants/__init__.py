"""Authlib's grants, one module each, a few lines per hook over storage/."""
