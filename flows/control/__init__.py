"""The control plane: what the pipeline decides and what people change, behind the CLI and the dashboard alike.

- :mod:`~gatewatch.flows.control.policy`: a finding becomes a decision (tier, limit, expiry)
- :mod:`~gatewatch.flows.control.controller`: the loop that applies decisions, expires them and queues deliveries
- :mod:`~gatewatch.flows.control.incidents`: findings joined into incidents, and the alerts they raise
- :mod:`~gatewatch.flows.control.decisions`: a person's approve and revert
- :mod:`~gatewatch.flows.control.decision_api`: the decision and risk API that bouncers and gateways ask
"""
