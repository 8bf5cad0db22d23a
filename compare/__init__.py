"""The comparison harness, report and CLI. Imports no framework at module level.

`compare.load(DIR)`: a comparison's runs as a pandas DataFrame; `compare.load_weights(RUN)`: a run's
final weights, batch-norm state included (see compare/results.py)."""

from compare.results import load, load_weights  # noqa: F401
