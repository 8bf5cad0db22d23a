"""The comparison harness, report and CLI. Imports no framework at module level."""
