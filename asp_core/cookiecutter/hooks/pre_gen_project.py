"""Refuse names that would generate a project which cannot be imported or registered, and
values that would make a pyproject.toml pip refuses to install (setuptools validates the version
and the author's email; the project was made and failed only at ``pip install``)."""

import importlib.metadata
import importlib.util
import keyword
import re
import sys

slug = "{{ cookiecutter.project_slug|escape_str }}"
package = "{{ cookiecutter.package_name|escape_str }}"
specializer = "{{ cookiecutter.specializer_name|escape_str }}"
version = "{{ cookiecutter.version|escape_str }}"
email = "{{ cookiecutter.email|escape_str }}"

# PEP 440 (its appendix's pattern, as setuptools checks it: 1.0, v0.1.0-rc.1, 2.0.post1.dev3)
VERSION = re.compile(r"""v?([0-9]+!)?[0-9]+(\.[0-9]+)*
    ([-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?
    ((-[0-9]+)|([-_.]?(post|rev|r)[-_.]?[0-9]*))?
    ([-_.]?dev[-_.]?[0-9]*)?
    (\+[a-z0-9]+([-_.][a-z0-9]+)*)?""", re.VERBOSE | re.IGNORECASE)

#: package names that install but break the project's own tests (or every project's)
RESERVED = {"conftest": "the module name pytest gives each tests/conftest.py: installed, it "
                        "stands in for the project's own",
            "tests": "what projects call their test folders: installed, it stands in for them"}


def installed_distribution(name: str) -> str | None:
    """The installed distribution ``pip install`` of a project called ``name`` would replace
    (names compared as pip does: case, '-', '_' and '.' alike), or None: pip uninstalls it,
    and its import name may differ (scikit-learn is sklearn), so the package check misses it."""
    try:
        return importlib.metadata.distribution(name).metadata["Name"] or name
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def registered_specializer(name: str) -> str | None:
    """The installed distribution whose plugin registers a specializer called ``name``, or
    None: two with one name cannot both be installed (the registry refuses the second)."""
    try:
        from asp_core.plugins import get_registry

        spec = get_registry().specializers.get(name)
    except Exception:  # noqa: BLE001 - an Asp that cannot load its plugins: nothing to compare
        return None
    return None if spec is None else f"plugin {spec.plugin!r} ({spec.distribution})"


problems = []
if not re.fullmatch(r"[a-z0-9]+(?:[-.][a-z0-9]+)*", slug):
    problems.append(f"distribution name {slug!r}: use letters, digits and single '-' between them")
elif (taken := installed_distribution(slug)) is not None:
    problems.append(f"distribution name {slug!r} is taken by the installed {taken!r}: "
                    "installing the new project would uninstall it")
if not package.isidentifier() or keyword.iskeyword(package):
    problems.append(f"package name {package!r} is not a Python identifier")
elif package in RESERVED:
    problems.append(f"package name {package!r} is {RESERVED[package]}")
elif importlib.util.find_spec(package) is not None:   # installing it would shadow that one
    problems.append(f"package name {package!r} is taken by an installed module")
if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", specializer):
    problems.append(f"specializer name {specializer!r}: letters, digits, '_' and '-' only")
elif (owner := registered_specializer(specializer)) is not None:
    problems.append(f"specializer name {specializer!r} is registered by {owner}: choose "
                    "another (--extra specializer_name=...)")
if not VERSION.fullmatch(version):   # no spaces around it either: setuptools keeps them
    problems.append(f"version {version!r} is not a PEP 440 version such as 0.1.0 or 1.0rc1")
if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):   # what setuptools accepts, no spaces
    problems.append(f"email {email!r} is not an address such as you@example.com")
if problems:
    print("asp new: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
