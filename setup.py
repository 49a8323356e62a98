"""setuptools shim: registers the cffi extension built by build.py."""

from setuptools import setup

setup(cffi_modules=["build.py:ffibuilder"])
