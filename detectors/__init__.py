"""Detectors, registered by name (see :mod:`gatewatch.detectors.base` for the contract)."""

from __future__ import annotations

from gatewatch.detectors.anomaly import Anomaly
from gatewatch.detectors.base import BaselineDetector, Detector, Reason
from gatewatch.detectors.brute_force import BruteForce
from gatewatch.detectors.credential_stuffing import CredentialStuffing
from gatewatch.detectors.flooding import Flooding
from gatewatch.detectors.form_spam import FormSpam
from gatewatch.detectors.key_compromise import KeyCompromise
from gatewatch.detectors.probing import Probing
from gatewatch.detectors.scraping import Scraping

DETECTORS: dict[str, type] = {
    cls.name: cls
    for cls in (CredentialStuffing, BruteForce, Scraping, Flooding, KeyCompromise, Probing, FormSpam, Anomaly)
}

__all__ = [
    "DETECTORS",
    "Anomaly",
    "BaselineDetector",
    "BruteForce",
    "CredentialStuffing",
    "Detector",
    "Flooding",
    "FormSpam",
    "KeyCompromise",
    "Probing",
    "Reason",
    "Scraping",
]
