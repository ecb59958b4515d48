"""Test-only specializers that exercise the core end to end."""
