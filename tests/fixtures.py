"""Fixtures shared across test packages (kept out of conftest.py so it stays about infrastructure)."""
