"""Asp is SEJITS for Python (being written)."""
