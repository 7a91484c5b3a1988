"""Persistence: SQLAlchemy models (schema only), the database handle, and repositories."""
