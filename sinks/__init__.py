"""Outputs of the pipeline: the Parquet store, the control database and its outbox, gateways and alert destinations."""
