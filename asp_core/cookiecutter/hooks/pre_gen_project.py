"""Refuse names that would generate a project which cannot be imported or registered."""

import importlib.util
import keyword
import re
import sys

slug = "{{ cookiecutter.project_slug|escape_str }}"
package = "{{ cookiecutter.package_name|escape_str }}"
specializer = "{{ cookiecutter.specializer_name|escape_str }}"

problems = []
if not re.fullmatch(r"[a-z0-9]+(?:[-.][a-z0-9]+)*", slug):
    problems.append(f"distribution name {slug!r}: use letters, digits and single '-' between them")
if not package.isidentifier() or keyword.iskeyword(package):
    problems.append(f"package name {package!r} is not a Python identifier")
elif importlib.util.find_spec(package) is not None:   # installing it would shadow that one
    problems.append(f"package name {package!r} is taken by an installed module")
if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", specializer):
    problems.append(f"specializer name {specializer!r}: letters, digits, '_' and '-' only")
if problems:
    print("asp new: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
