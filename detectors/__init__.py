"""Detectors, registered by name (see :mod:`detectors.base` for the contract)."""

from __future__ import annotations

from detectors.anomaly import Anomaly
from detectors.base import BaselineDetector, Detector, Reason
from detectors.brute_force import BruteForce
from detectors.credential_stuffing import CredentialStuffing
from detectors.flooding import Flooding
from detectors.form_spam import FormSpam
from detectors.key_compromise import KeyCompromise
from detectors.probing import Probing
from detectors.scraping import Scraping

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
