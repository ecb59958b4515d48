"""User settings: environment variables, then the ``asp.toml`` config file, then defaults; read
on every use (a few ``os.environ`` look-ups), so they may change between calls. The variables
are listed in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from asp_core.phases import PHASES

__all__ = ["flag", "mode", "autotune_mode", "cache_dir", "compile_timeout", "phase_choice",
           "phase_variables", "named_specializers", "disabled_passes", "config_path",
           "load_config", "problems"]

_MODES = ("auto", "strict", "python")
_AUTOTUNE = ("off", "once", "always")
#: the ``[asp]`` keys whose values are one of a few words, checked when the file is read
_CHOICES = {"mode": _MODES, "autotune": _AUTOTUNE}
_ASP_KEYS = ("mode", "autotune", "cache_dir", "compile_timeout")
#: the ``[asp]`` keys whose values are numbers (the others are strings)
_NUMBER_KEYS = ("compile_timeout",)
#: seconds a compiler may run before it is killed, unless ``ASP_COMPILE_TIMEOUT`` says otherwise
COMPILE_TIMEOUT = 600.0


def _choice(var: str, allowed: tuple[str, ...], default: str) -> str:
    """The variable ``var``, else its ``[asp]`` key in the config file, else ``default``. Only
    the variable is checked here: the file's value was checked when it was read, so an error
    names the place the value came from."""
    value = os.environ.get(var, "").strip().lower()
    if not value:
        return str(load_config().get("asp", {}).get(var[4:].lower(), default)).strip().lower()
    if value not in allowed:
        raise ValueError(f"{var}={value!r} is not valid; use one of: {', '.join(allowed)}")
    return value


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def flag(var: str, default: bool = False) -> bool:
    """A yes/no variable: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any
    case), ``default`` when unset or empty; another value is a ``ValueError`` naming it (taken
    as "on" before, ``ASP_DISABLE_PLUGIN_AUTOLOAD=0`` loaded no plugin)."""
    value = os.environ.get(var, "").strip().lower()
    if not value:
        return default
    if value not in _ON + _OFF:
        raise ValueError(f"{var}={value!r} is not valid; use 1 or 0 (true/false, yes/no, on/off)")
    return value in _ON


def mode() -> str:
    """``ASP_MODE``: ``auto`` specialises or falls back with a warning; ``strict`` raises;
    ``python`` never specialises."""
    return _choice("ASP_MODE", _MODES, "auto")


def autotune_mode() -> str:
    """``ASP_AUTOTUNE``: ``off`` uses each specializer's default variant, ``once`` tunes when the
    perf database has no winner yet, ``always`` re-tunes in every process."""
    return _choice("ASP_AUTOTUNE", _AUTOTUNE, "once")


def problems(*readers: Callable[[], object]) -> list[str]:
    """The errors of reading settings: each reader (``mode``, a plugin's own) called as a
    kernel's first call would, its ``ValueError`` kept (``asp doctor``'s settings rows, the
    core's and the plugins', so an invalid value fails there and not only at that call)."""
    found = []
    for read in readers:
        try:
            read()
        except ValueError as exc:
            found.append(str(exc))
    return list(dict.fromkeys(found))


def config_path() -> Path:
    """Where ``asp.toml`` is read from."""
    explicit = os.environ.get("ASP_CONFIG")
    if explicit:
        return Path(explicit)
    return _user_config_file(tuple(os.environ.get(v) for v in _CONFIG_DIR_VARIABLES))


#: what platformdirs finds the user's config folder from on this platform (read at every
#: settings read: the Windows ones cost a third of an ``iterate`` call's reads elsewhere)
_CONFIG_DIR_VARIABLES = ("APPDATA", "LOCALAPPDATA", "USERPROFILE") if os.name == "nt" else \
    ("XDG_CONFIG_HOME", "HOME")


@lru_cache(maxsize=8)
def _user_config_file(variables: tuple[str | None, ...]) -> Path:
    """``asp.toml`` in the user's config folder, for these values of the variables it is found
    from: asked of platformdirs at every mode read, it was half of an ``iterate(steps=1)``
    call (25 us of 51, 128x128)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("asp")) / "asp.toml"


@lru_cache(maxsize=8)
def _read_config(path: str, mtime: float) -> dict[str, Any]:
    import tomllib
    try:  # utf-8-sig: a byte-order mark (Windows editors write one) is not "line 1, column 1"
        data = tomllib.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"invalid Asp config file {path}: {exc}") from None
    problem = _layout_problem(data)
    if problem:
        raise ValueError(f"invalid Asp config file {path}: {problem}")
    return data


def _layout_problem(data: dict[str, Any]) -> str | None:
    """What in a parsed config is not where or of the type Asp reads it (None: all fine). A
    key Asp does not read is one too: a misspelt ``[phase]`` or ``auto_tune`` was ignored."""
    asp, phases = data.get("asp", {}), data.get("phases", {})
    for key in data:
        if key not in ("asp", "phases"):
            return f"{key!r} is not a table Asp reads; use [asp] and [phases]"
    if not isinstance(asp, dict):
        return "'asp' must be a table ([asp])"
    for key in asp:
        if key not in _ASP_KEYS:
            return f"[asp] {key} is not a setting; use one of: {', '.join(_ASP_KEYS)}"
    for key in _ASP_KEYS:
        if key in _NUMBER_KEYS:
            if key in asp and _seconds(asp[key]) is None:
                return f"[asp] {key} must be a positive number of seconds, got {asp[key]!r}"
        elif key in asp and not isinstance(asp[key], str):
            return f"[asp] {key} must be a string, got {asp[key]!r}"
    for key, allowed in _CHOICES.items():   # read as the variables are: any case, spaces
        if key in asp and asp[key].strip().lower() not in allowed:
            return f"[asp] {key} = {asp[key]!r} is not valid; use one of: {', '.join(allowed)}"
    if not isinstance(phases, dict):
        return "'phases' must be a table ([phases])"
    for key, value in phases.items():
        where = f"[phases] {key}"
        if key in PHASES:
            if not isinstance(value, str) or not value.strip():
                return f"{where} must be a component name (a string), got {value!r}"
        elif not isinstance(value, dict):
            return (f"{where}: {key!r} is not a phase ({', '.join(PHASES)}), so it must be a "
                    f"specializer's table [phases.{key}]")
        else:
            for phase, name in value.items():
                if phase not in PHASES or not isinstance(name, str) or not name.strip():
                    return (f"[phases.{key}] {phase} = {name!r}: expected a phase "
                            f"({', '.join(PHASES)}) = a component name (a string)")
    return None


def load_config() -> dict[str, Any]:
    """The parsed config file, or ``{}`` when there is none."""
    import stat

    path = config_path()
    try:
        st = path.stat()
    except OSError:
        return {}
    if not stat.S_ISREG(st.st_mode):   # ASP_CONFIG=/dev/zero read forever; a FIFO blocks
        raise ValueError(f"invalid Asp config file {path}: not a regular file")
    return _read_config(str(path), st.st_mtime)


def cache_dir() -> Path:
    """``ASP_CACHE_DIR``, else the config's ``[asp] cache_dir``, else the user cache dir."""
    explicit = os.environ.get("ASP_CACHE_DIR") or load_config().get("asp", {}).get("cache_dir")
    if explicit:   # absolute: compilers run in a build directory of the cache
        return Path(explicit).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_cache_dir("asp"))


def compile_timeout() -> float:
    """``ASP_COMPILE_TIMEOUT``, else the config's ``[asp] compile_timeout``, else
    :data:`COMPILE_TIMEOUT`: the seconds a compiler may run before it is killed (a hung
    compiler or wrapper would hang the kernel's first call; a slow machine building large
    generated code may need more)."""
    text = os.environ.get("ASP_COMPILE_TIMEOUT", "").strip()
    if not text:
        return float(load_config().get("asp", {}).get("compile_timeout", COMPILE_TIMEOUT))
    try:
        seconds = _seconds(float(text))
    except ValueError:
        seconds = None
    if seconds is None:
        raise ValueError(f"ASP_COMPILE_TIMEOUT={text!r} is not valid; use a positive number of "
                         "seconds")
    return seconds


def _seconds(value: Any) -> float | None:
    """``value`` as a positive, finite number of seconds, else None (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 < value < float("inf") else None


def _choice_parts(text: str, var: str) -> list[tuple[str | None, str]]:
    """``(specializer, component)`` of each part of the ``ASP_<PHASE>`` variable ``var``:
    ``"numpy"`` applies to every specializer (None), ``"stencil:numpy,gmm:openmp"`` per
    specializer. ``ValueError`` for a part naming no component (``stencil:``) or two parts
    naming different ones for the same specializers: the first won, without a word."""
    parts: list[tuple[str | None, str]] = []
    named: dict[str | None, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        spec, name = item.partition(":")[::2] if ":" in item else (None, item)
        spec, name = spec.strip() if spec is not None else None, name.strip()
        if not name or spec == "":
            raise ValueError(f"{var}={text!r}: the part {item!r} names no "
                             f"{'component' if not name else 'specializer'}")
        if named.setdefault(spec, name) != name:
            raise ValueError(f"{var}={text!r} names two components for "
                             f"{'every specializer' if spec is None else spec}: "
                             f"{named[spec]!r} and {name!r}")
        parts.append((spec, name))
    return parts


def phase_variables() -> None:
    """Read every ``ASP_<PHASE>`` variable as a kernel's specialisation would (``ValueError``
    naming one that is malformed), for ``asp doctor``."""
    for phase in PHASES:
        var = f"ASP_{phase.upper()}"
        _choice_parts(os.environ.get(var, ""), var)


def _parse_choice(text: str, specializer: str, var: str) -> str | None:
    """The component ``text`` names for ``specializer`` (its own part wins over a general one)."""
    general = None
    for spec, name in _choice_parts(text, var):
        if spec is None:
            general = name
        elif spec == specializer:
            return name
    return general


def phase_choice(specializer: str, phase: str, options: dict[str, Any] | None = None
                 ) -> tuple[str | None, str]:
    """The component the user asked for in ``phase`` and where the request came from
    (kernel ``options`` > ``ASP_<PHASE>`` > ``[phases.<specializer>]`` > ``[phases]``), or
    ``(None, "")``."""
    assert phase in PHASES
    if options and options.get(phase):
        return str(options[phase]), "kernel option"
    env = os.environ.get(f"ASP_{phase.upper()}")
    if env:
        name = _parse_choice(env, specializer, f"ASP_{phase.upper()}")
        if name:
            return name, f"ASP_{phase.upper()}"
    phases = load_config().get("phases", {})
    per_spec = phases.get(specializer, {})
    if isinstance(per_spec, dict) and per_spec.get(phase):
        return str(per_spec[phase]), f"config [phases.{specializer}]"
    if isinstance(phases.get(phase), str):
        return phases[phase], "config [phases]"
    return None, ""


def named_specializers(phase: str) -> list[tuple[str, str]]:
    """``(specializer, setting)`` for each specializer named by the ``spec:`` parts of
    ``ASP_<PHASE>`` or by a ``[phases.<spec>]`` table of the config file (the registry warns
    about those no plugin registers: a misspelt one would be ignored)."""
    env = f"ASP_{phase.upper()}"
    named = [(spec, env) for spec, _ in _choice_parts(os.environ.get(env, ""), env) if spec]
    phases = load_config().get("phases", {})
    return named + [(name, f"config [phases.{name}]") for name, value in phases.items()
                    if isinstance(value, dict)]


def disabled_passes(options: dict[str, Any] | None = None) -> frozenset[str]:
    """Pass names switched off by ``ASP_DISABLE_PASSES`` or the kernel option ``disable_passes``."""
    names = {p.strip() for p in os.environ.get("ASP_DISABLE_PASSES", "").split(",") if p.strip()}
    extra = (options or {}).get("disable_passes") or ()
    if isinstance(extra, str):  # "cse" or "cse,fuse-em", not the characters of the string
        extra = extra.split(",")
    names.update(str(p).strip() for p in extra if str(p).strip())
    return frozenset(names)
