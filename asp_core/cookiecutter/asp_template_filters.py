"""Jinja filters of the ``asp new`` template, named in ``cookiecutter.json``'s ``_extensions``
(cookiecutter puts the template folder on ``sys.path`` while it renders; the module's name is
unusual so that no other ``local_extensions`` module already imported stands in for it)."""

from __future__ import annotations

from cookiecutter.utils import simple_filter

__all__ = ["escape_str"]

# backslash and double quote escaped; control characters (not allowed raw in a TOML string, a
# line break not in a one-line Python string either) as \uXXXX, which Python and TOML read alike
_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"',
            **{code: f"\\u{code:04x}" for code in (*range(0x20), 0x7F)}}


@simple_filter
def escape_str(value: object) -> str:
    """``value`` as the inside of a double-quoted string meaning the same text in Python (between
    one or three double quotes) and in TOML (a basic string): a user's description such as
    ``Maps "fast" kernels`` used to end the string early, breaking pyproject.toml and plugin.py."""
    return str(value).translate(_ESCAPES)
