"""``asp new NAME``: start a specializer distribution from the cookiecutter template.

The template's single source is ``cookiecutter-specializer/`` at the root of the Asp checkout;
editable installs of asp-core find it there. A packaged copy at ``asp_core/cookiecutter`` (if a
build ever ships one) takes precedence, and ``--template`` / ``ASP_TEMPLATE`` name any other
cookiecutter template (a folder, a git URL, ``gh:owner/repo``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

__all__ = ["command", "template_dir"]


def template_dir() -> Path:
    """The cookiecutter template: shipped inside asp_core, or the checkout's copy."""
    packaged = Path(__file__).resolve().parent.parent / "cookiecutter"
    if (packaged / "cookiecutter.json").exists():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "cookiecutter-specializer"
    if (checkout / "cookiecutter.json").exists():
        return checkout
    raise click.ClickException(
        "the specializer template is not installed with asp-core (it ships with editable "
        "installs of a checkout); pass --template PATH_OR_URL or set ASP_TEMPLATE")


@click.command("new")
@click.argument("name")
@click.option("--output-dir", "-o", default=".", type=click.Path(file_okay=False),
              help="Where to create the project.")
@click.option("--no-input", is_flag=True, help="Use defaults instead of asking.")
@click.option("--extra", "extra", multiple=True, metavar="KEY=VALUE",
              help="Template variable: author, email, license (BSD-3-Clause, MIT, Apache-2.0), "
                   "description, specializer_name, version.")
@click.option("--template", default=None, envvar="ASP_TEMPLATE", metavar="PATH_OR_URL",
              help="Another cookiecutter template (default: Asp's specializer template).")
@click.option("--overwrite", is_flag=True, help="Write into an existing project folder.")
def command(name: str, output_dir: str, no_input: bool, extra: tuple[str, ...],
            template: str | None, overwrite: bool) -> None:
    """Create a new specializer distribution called NAME.

    The result is a pip-installable project with a working element-wise specializer (one
    module per phase), its tests (including a fallback test), a README and a docs page.
    """
    try:
        from cookiecutter.exceptions import CookiecutterException
        from cookiecutter.main import cookiecutter
    except ImportError:
        raise click.ClickException("asp new needs cookiecutter: pip install 'asp-core[new]'"
                                   ) from None
    context = {"project_name": name}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--extra")
        context[key.strip()] = value
    source = template or str(template_dir())
    quiet = logging.getLogger("cookiecutter")  # it logs a traceback for a refused name
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        path = cookiecutter(source, no_input=no_input, output_dir=output_dir,
                            extra_context=context, overwrite_if_exists=overwrite)
    except CookiecutterException as exc:
        detail = str(exc).removeprefix("Error: ")
        if "Hook script failed" in detail:
            detail = f"the name {name!r} was refused by the template (see the message above)"
        raise click.ClickException(detail) from None
    finally:
        quiet.setLevel(level)
    rel = os.path.relpath(path)
    click.echo(f"created {path}\nnext: pip install -e {rel}[test] && pytest {rel}")
