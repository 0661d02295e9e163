"""Builds the one compiled module, ``online._fixed_mix`` (Cython), beside the pure-Python package.

Everything else is in ``pyproject.toml``. The extension is optional: where it cannot be built (no C
compiler), the install still succeeds and ``online.compiled`` runs the Python twins of its loops
(the same lists, slower).
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = cythonize(
    [Extension("online._fixed_mix", ["online/_fixed_mix.pyx"],
               # the same float operations as the Python twins: no fused multiply-adds
               extra_compile_args=["-O2", "-ffp-contract=off"])],
    compiler_directives={"language_level": "3"},
)
for extension in extensions:
    extension.optional = True  # (cythonize does not carry the flag over from the template)

setup(ext_modules=extensions)
