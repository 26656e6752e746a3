"""Outputs of the pipeline: the Parquet store and, later, gateways and webhooks."""
