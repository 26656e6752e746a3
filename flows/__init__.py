"""gatewatch: the pipeline (CLI, config, parsers, windows, policy, dataflow)."""
