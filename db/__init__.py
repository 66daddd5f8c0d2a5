"""Persistence: SQLAlchemy models, engine/session, and every query (one module per concept)."""
