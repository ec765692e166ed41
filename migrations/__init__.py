"""Alembic migrations for Ostiary's schema (run with `ostiary db upgrade`)."""
