"""The bundled notebooks and the script that builds them (a package only so that pytest imports
notebooks/conftest.py as notebooks.conftest, apart from tests/conftest.py)."""
