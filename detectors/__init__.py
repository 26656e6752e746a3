"""Detectors, registered by name (see :mod:`detectors.base` for the contract)."""

from __future__ import annotations

from detectors.base import Detector, Reason
from detectors.consumer_baseline import ConsumerBaseline

DETECTORS: dict[str, type] = {cls.name: cls for cls in (ConsumerBaseline,)}

__all__ = ["DETECTORS", "ConsumerBaseline", "Detector", "Reason"]
