"""{{ cookiecutter.description|escape_str }}.

Write a function of scalars that returns one arithmetic expression, decorate it with
:func:`elementwise`, and call it on equally shaped float64 NumPy arrays::

    from {{ cookiecutter.package_name }} import elementwise

    @elementwise
    def blend(a, b):
        return 0.25 * a + 0.75 * max(a, b)

    blend(x, y)        # == numpy.vectorize(blend.func)(x, y), computed by generated C

The first call runs Asp's five phases (one module each here: :mod:`.frontend`, :mod:`.domain`,
:mod:`.platforms`, :mod:`.variants`, :mod:`.backends`); :mod:`.plugin` registers them.
"""

from {{ cookiecutter.package_name }}.api import SPECIALIZER, elementwise, python_map

__version__ = "{{ cookiecutter.version|escape_str }}"
__all__ = ["elementwise", "python_map", "SPECIALIZER", "__version__"]
