"""The lab: labelled traffic (:mod:`~gatewatch.flows.lab.simulate`) and how well it is detected (:mod:`~gatewatch.flows.lab.evaluate`)."""
