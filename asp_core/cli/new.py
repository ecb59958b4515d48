"""``asp new NAME``: start a specializer distribution from the cookiecutter template."""

from __future__ import annotations

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
    raise click.ClickException("the specializer template is not installed with asp-core")


@click.command("new")
@click.argument("name")
@click.option("--output-dir", "-o", default=".", type=click.Path(file_okay=False),
              help="Where to create the project.")
@click.option("--no-input", is_flag=True, help="Use defaults instead of asking.")
@click.option("--extra", "extra", multiple=True, metavar="KEY=VALUE",
              help="Template variable (author, license, ...).")
def command(name: str, output_dir: str, no_input: bool, extra: tuple[str, ...]) -> None:
    """Create a new specializer distribution called NAME."""
    try:
        from cookiecutter.main import cookiecutter
    except ImportError:
        raise click.ClickException("asp new needs cookiecutter: pip install 'asp-core[new]'"
                                   ) from None
    context = {"project_name": name}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--extra")
        context[key] = value
    path = cookiecutter(str(template_dir()), no_input=no_input, output_dir=output_dir,
                        extra_context=context)
    click.echo(f"created {path}\nnext: pip install -e {path}[test] && pytest {path}")
