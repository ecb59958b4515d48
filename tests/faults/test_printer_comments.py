"""C printer comments (issue 14): no comment text can end the comment and inject code."""

from __future__ import annotations

import subprocess

import pytest

from asp_core import cast as C
from pytest_asp import requires_compiler
from asp_core.toolchain import find_toolchain

HOSTILE = [
    "*/ int injected_a;",
    "*\\\n/ int injected_b;",           # a line splice between '*' and '/'
    "*\\ \t\n/ int injected_c;",        # gcc also splices a backslash followed by blanks
    "ok\\\nint injected_d; /*",         # a splice that would pull the next line into the comment
    "*??/\n/ int injected_e;",          # trigraph for a backslash (-trigraphs, -std=c11)
    "x\r/ int injected_f; */",
]


def _module(text: str) -> C.Module:
    return C.Module([C.Comment(text), C.Comment("second")])


@pytest.mark.parametrize("text", HOSTILE)
def test_comment_text_cannot_close_the_comment(text):
    src = C.print_c(_module(text))
    for line in src.splitlines():
        if line.strip():
            assert line.strip().startswith("/*") and line.rstrip().endswith("*/"), src
            assert line.rstrip()[2:-2].find("*/") < 0, src
            assert not line.rstrip().endswith("\\"), src


@requires_compiler
@pytest.mark.parametrize("text", HOSTILE)
def test_preprocessed_comment_leaves_no_code(text, tmp_path):
    src = tmp_path / "c.c"
    src.write_text(C.print_c(_module(text)) + "int marker;\n")
    cc = find_toolchain("c").executable
    for std in ("-std=gnu11", "-std=c11"):
        out = subprocess.run([cc, std, "-E", "-P", str(src)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "injected" not in out.stdout, (std, out.stdout)
        assert "marker" in out.stdout
