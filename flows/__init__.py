"""gatewatch's pipeline. This package is the dataflow; its sub-packages are the rest.

- the dataflow (here): :mod:`~gatewatch.flows.config`, :mod:`~gatewatch.flows.sources` and
  :mod:`~gatewatch.flows.kafka` (input), :mod:`~gatewatch.flows.parsers`, :mod:`~gatewatch.flows.features`
  and :mod:`~gatewatch.flows.horizons` (windows), :mod:`~gatewatch.flows.shard` (window, detect, decide),
  :mod:`~gatewatch.flows.dataflow` (the Bytewax wiring), :mod:`~gatewatch.flows.metrics`
- :mod:`gatewatch.flows.cli`: the ``gatewatch`` command
- :mod:`gatewatch.flows.control`: the control plane (policy, controller, incidents, people's decisions, the decision API)
- :mod:`gatewatch.flows.lab`: labelled traffic and its evaluation
"""
