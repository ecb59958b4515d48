"""Mako templates loaded from a package's templates/ folder."""

from __future__ import annotations

import uuid

import pytest

from asp_core import templates


@pytest.fixture
def package(tmp_path, monkeypatch):
    name = f"asp_tmpl_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    (root / "templates").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "templates" / "loop.c.mako").write_text(
        "double ${fn}(const double *x) {\n"
        "% for k in range(n):\n"
        "    x[${k}] += ${scale};\n"
        "% endfor\n"
        "}\n")
    (root / "templates" / "uses_base.c.mako").write_text(
        "<%include file='part.mako'/>\nint main(void) { return 0; }\n")
    (root / "templates" / "part.mako").write_text("/* ${note} */")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_render_from_package_data(package):
    text = templates.render(package, "loop.c.mako", fn="scale", n=2, scale=2.5)
    assert text == ("double scale(const double *x) {\n    x[0] += 2.5;\n    x[1] += 2.5;\n}\n")
    assert templates.get_template(package, "loop.c.mako") is templates.get_template(
        package, "loop.c.mako")
    assert "/* hi */" in templates.render(package, "uses_base.c.mako", note="hi")


def test_undefined_variable_is_an_error(package):
    with pytest.raises(NameError):
        templates.render(package, "loop.c.mako", fn="f", n=1)  # scale missing


def test_missing_template_and_folder(package, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no template 'nope.mako' in package "
                                                f"'{package}'"):
        templates.get_template(package, "nope.mako")
    (tmp_path / "asp_no_templates_pkg").mkdir()
    (tmp_path / "asp_no_templates_pkg" / "__init__.py").write_text("")
    with pytest.raises(FileNotFoundError, match="has no templates/ directory"):
        templates.render("asp_no_templates_pkg", "x.mako")
