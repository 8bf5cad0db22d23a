"""The comparison harness, report and CLI. Imports no framework at module level.

`compare.load(DIR)`: a comparison's runs as a pandas DataFrame (see compare/results.py)."""
from compare.results import load  # noqa: F401
