"""Framework-free foundation: data, run config, batch order, run records (numpy only)."""
