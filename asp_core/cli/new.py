"""``asp new NAME``: start a specializer distribution from the cookiecutter template.

The template ships inside the package (``asp_core/cookiecutter``, package data), so ``asp new``
works from a wheel as from a checkout. ``--template`` / ``ASP_TEMPLATE`` name any other
cookiecutter template (a folder, a git URL, ``gh:owner/repo``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

__all__ = ["command", "template_dir"]


def template_dir() -> Path:
    """The cookiecutter template shipped inside asp_core."""
    packaged = Path(__file__).resolve().parent.parent / "cookiecutter"
    if (packaged / "cookiecutter.json").exists():
        return packaged
    raise click.ClickException(
        f"the specializer template is missing from this asp-core install ({packaged}); "
        "reinstall asp-core, or pass --template PATH_OR_URL or set ASP_TEMPLATE")


def core_requirement() -> str:
    """The ``asp-core`` range a new specializer should depend on: this release series
    (``>=0.1.0,<0.2`` for 0.1.x; ``>=1.2.0,<2`` from 1.0 on)."""
    from asp_core._version import __version__

    major, minor = (int(x) for x in __version__.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"asp-core>={major}.{minor}.0,<{upper}"


@click.command("new", help="""
    Create a new specializer distribution called NAME.

    The result is a pip-installable project with a working element-wise specializer (one
    module per phase), its tests (including a fallback test), a README and a docs page.
    """)
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
    try:
        import cookiecutter  # noqa: F401 - only whether it is installed
    except ImportError:
        raise click.ClickException("asp new needs cookiecutter: pip install 'asp-core[new]'"
                                   ) from None
    if "/" in name or os.sep in name:   # cookiecutter would leave the parent folder behind
        raise click.BadParameter(f"{name!r} is a path; give a name and --output-dir",
                                 param_hint="NAME")
    _check_text(name, "NAME")
    context = {"project_name": _literal(name)}
    if template is None:
        context["_asp_core_requirement"] = core_requirement()
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--extra")
        _check_text(item, "--extra")
        context[key.strip()] = _literal(value)
    source = template or str(template_dir())
    known = _template_variables(source)
    unknown = sorted(set(context) - {"project_name", "_asp_core_requirement"} - known)
    if known and unknown:   # cookiecutter ignores them: --extra licence=MIT made a BSD project
        raise click.BadParameter(f"the template has no variable {', '.join(map(repr, unknown))};"
                                 f" it has: {', '.join(sorted(known))}", param_hint="--extra")
    made = _missing_folders(Path(output_dir))
    try:
        path = _generate(source, no_input, output_dir, context, overwrite)
    except click.ClickException:   # a refused project leaves no empty --output-dir behind
        _remove_empty(made)
        raise
    rel = os.path.relpath(path)   # quoted: the hint is meant to be pasted into a shell
    helper = _pytest_asp_source() if template is None else None
    first = f"-e {shlex.quote(str(helper))} " if helper else ""
    click.echo(f"created {path}\nnext: pip install {first}-e {shlex.quote(rel + '[test]')} && "
               f"pytest {shlex.quote(rel)}")
    if template is None and helper is None and importlib.util.find_spec("pytest_asp") is None:
        click.echo("note: the test extra needs pytest-asp (plugins/pytest-asp of the Asp "
                   "sources), which is not installed here", err=True)


def _check_text(value: str, hint: str) -> None:
    """A lone surrogate (undecodable bytes in argv) cannot be written to a file: a NAME of them
    stopped with the codec's own error and left the project folder behind."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise click.BadParameter(f"{value!r} is not valid Unicode text", param_hint=hint
                                 ) from None


def _generate(source: str, no_input: bool, output_dir: str, context: dict[str, str],
              overwrite: bool) -> str:
    """Run cookiecutter; the project's path, or :class:`click.ClickException` with one line."""
    from cookiecutter.exceptions import CookiecutterException
    from cookiecutter.main import cookiecutter
    from jinja2 import TemplateError

    quiet = logging.getLogger("cookiecutter")  # it logs a traceback for a refused name
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="asp-new-") as tmp, _temporary_files_in(tmp):
            if source == str(template_dir()):
                # without the bytecode pip compiled in the installed template (its .py files
                # that parse): cookiecutter copied every __pycache__ into the new project
                source = str(shutil.copytree(source, Path(tmp) / "template", ignore=shutil
                                             .ignore_patterns("__pycache__", "*.pyc")))
            return str(cookiecutter(source, no_input=no_input, output_dir=output_dir,
                                    extra_context=context, overwrite_if_exists=overwrite,
                                    config_file=_config_file(Path(tmp))))
    except (CookiecutterException, ValueError, TemplateError) as exc:  # ValueError: --extra
        # KEY=a non-choice; TemplateError: a template of another's that Jinja cannot read
        detail = str(exc).removeprefix("Error: ")
        if "Hook script failed (exit status" in detail:   # the hook printed which value and why
            detail = "the template refused the values given (see its message above)"
        raise click.ClickException(detail) from None
    except (OSError, subprocess.CalledProcessError) as exc:   # an --output-dir that cannot be
        raise click.ClickException(_environment_error(exc, source)) from None  # made, no network
    finally:
        quiet.setLevel(level)


@contextlib.contextmanager
def _temporary_files_in(folder: str) -> Iterator[None]:
    """Make ``tempfile``'s files in ``folder`` meanwhile: cookiecutter copies each hook script
    to a temporary file it never removes (by design, cookiecutter#886), so every ``asp new``
    left a ``tmpXXXX.py`` in the system's temporary folder; they now go with ``folder``."""
    before = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield
    finally:
        tempfile.tempdir = before


def _config_file(tmp: Path) -> str | None:
    """A cookiecutter config for this run when the user's own cannot be used as it is, else
    None (theirs).  cookiecutter writes a replay of every project, and clones a template URL,
    into folders of the home directory: with a read-only or missing one (a container, a CI
    job) ``asp new`` stopped with "Unable to create directory at ~/.cookiecutter_replay/".
    The user's settings stay; only those folders move to ``tmp``, which goes afterwards."""
    import json

    from cookiecutter.config import get_user_config

    config = get_user_config()
    folders = ("replay_dir", "cookiecutters_dir")
    if all(_writable(Path(config[key]).expanduser()) for key in folders):
        return None
    path = tmp / "cookiecutter.yaml"   # JSON is YAML, and writes its OrderedDicts plainly
    path.write_text(json.dumps({**config, **{key: str(tmp / key) for key in folders}}),
                    encoding="utf-8")
    return str(path)


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists, or can be made, and takes new files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _literal(value: str) -> str:
    """``value`` as cookiecutter must see it to keep it as typed: it renders every value as a
    Jinja template, so ``{{ x }}`` in a description was an "undefined" error with the whole
    context, ``{% ... %}`` a traceback, and ``{# ... #}`` silently dropped. Such a value is
    given as a Jinja string literal, which renders to the value itself."""
    if not any(mark in value for mark in ("{{", "{%", "{#")):
        return value
    return '{{ "' + value.replace("\\", "\\\\").replace('"', '\\"') + '" }}'


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what
    cookiecutter creates before the template's hook may refuse the values."""
    missing = []
    path = Path(os.path.abspath(path))   # "x/../d": not d's parent x, which may not exist yet
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; a user's file stops it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _environment_error(exc: OSError | subprocess.CalledProcessError, source: str) -> str:
    """One line for what cookiecutter let through as a traceback: a folder it cannot create
    (OSError), a template it cannot download (requests' errors are OSErrors) or clone (git's
    failure other than "not found", re-raised as CalledProcessError)."""
    if isinstance(exc, subprocess.CalledProcessError):
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) \
            else str(exc.output or "")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        why = next((line for line in lines if line.startswith(("fatal:", "abort:"))),
                   lines[-1] if lines else f"exit status {exc.returncode}")
        return f"could not fetch the template {source}: {exc.cmd[0]} clone failed: {why}"
    if type(exc).__module__.startswith("requests"):   # the download of a zip template
        return f"could not fetch the template {source}: {exc}"
    return str(exc)


def _pytest_asp_source() -> Path | None:
    """The pytest-asp sources of the Asp checkout this asp-core runs from, when pytest-asp is
    not installed: the generated ``test`` extra requires it, and it is released with asp-core
    rather than found on every package index (``pip install -e 'new-spec[test]'`` failed in a
    fresh environment with "No matching distribution found for pytest-asp")."""
    if importlib.util.find_spec("pytest_asp") is not None:
        return None
    source = Path(__file__).resolve().parents[2] / "plugins" / "pytest-asp"
    return source if (source / "pyproject.toml").is_file() else None


def _template_variables(source: str) -> set[str]:
    """The variables a local template asks for (its ``cookiecutter.json`` keys, without the
    private ``_`` ones); empty when it cannot be read here (a remote template)."""
    import json

    try:
        data = json.loads((Path(source) / "cookiecutter.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {k for k in data if not k.startswith("_")} if isinstance(data, dict) else set()
