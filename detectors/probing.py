"""Probing: a client IP looking for what it should not find.

Four signals, the stronger wins; all fire on an IP never seen before:

- **error paths**: distinct paths answered 400/403/404/405 in one window;
  ``min_error_paths`` scores 0.5 (CrowdSec's ``http-probing`` alerts on the
  11th distinct path), while such answers are at least ``min_error_ratio`` of
  the IP's requests (a busy client reading thousands of ids meets a few 404s).
- **sensitive files**: distinct requests for files that are never public
  (``/.env``, ``/.git/HEAD``, ``/.htpasswd``, ``wp-config.php.bak``, any
  dot-file outside ``/.well-known/``; ``flows/features.py``);
  ``min_sensitive_paths`` scores 0.5 (CrowdSec ``http-sensitive-files``: 5th).
- **scanner user agent**: requests from a known scanner (Nikto, sqlmap,
  Nuclei, masscan …); ``min_scanner_requests`` scores 0.5 (CrowdSec
  ``http-bad-user-agent``: 2nd).
- **error burst** (for formats with templates, where distinct paths are not
  visible): ``min_errors`` such errors, with the same share.
- **attack payloads** (formats that log the concrete request): requests whose
  path or query string carries SQL injection, XSS, path traversal or command
  injection (``flows/payloads.py``); ``min_payload_requests`` scores 0.5.
- **malformed requests**: request lines that are not HTTP (a TLS handshake
  sent to a plain-HTTP port, binary, an invalid version);
  ``min_bad_requests`` scores 0.5; a request line that is HTTP but for its
  version (``GET / HTTP/1.2``) is deliberate, and ``min_bad_versions`` (1)
  such lines score 0.5 (CrowdSec ``http-dos-invalid-http-versions``).
- **scanner targets**: distinct admin-console or WordPress plugin paths
  answered 403/404 (``/phpmyadmin``, ``/+cscoe+/``, ``/wp-content/plugins/…``);
  ``min_probe_paths`` scores 0.5 (CrowdSec ``http-admin-interface-probing``
  and ``http-wordpress-scan`` alert on the 3rd and 4th).
- **user enumeration**: distinct ``author=N`` values (WordPress answers
  ``/?author=N`` with that user's page); ``min_enumerated_users`` scores 0.5.
- **open-proxy probes**: requests to use the server as a proxy (``CONNECT
  host:port``, ``GET http://elsewhere/``) that it refused; no client of an
  origin server sends one, so ``min_proxy_requests`` (1) scores 0.5.

An IP with history has the thresholds lifted to its own baseline plus
``z_onset`` spreads.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gatewatch.detectors.base import BaselineDetector, Signal, over
from gatewatch.detectors.baselines import Columns, Feature, column


class Probing(BaselineDetector):
    """Bursts of 404/403 on distinct paths, sensitive files and scanner user agents.

    Args:
        min_error_paths: distinct paths answered 400/403/404/405 that score 0.5.
        min_sensitive_paths: distinct sensitive files requested that score 0.5.
        min_scanner_requests: requests with a scanner user agent that score 0.5.
        min_errors: 400/403/404/405 answers in a window for the burst signal.
        min_error_ratio: share of such answers for the error-paths and burst signals.
        min_payload_requests: requests carrying an attack payload that score 0.5.
        min_bad_requests: malformed request lines that score 0.5.
        min_bad_versions: request lines with an invalid HTTP version that score 0.5.
        min_probe_paths: distinct admin-console or WordPress plugin paths answered 403/404 that score 0.5.
        min_enumerated_users: distinct ``author=N`` values that score 0.5.
        min_proxy_requests: refused proxy requests (CONNECT, absolute URIs) that score 0.5.

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.

    >>> d = Probing()
    >>> scan = {"requests": 9, "errors": 9, "error_ratio": 1.0, "error_paths": 9, "sensitive_paths": 9}
    >>> round(d.score_one("127.0.0.1", scan), 2)
    0.85
    >>> [r.text for r in d.explain_one("127.0.0.1", scan)]
    ['sensitive files requested 9 vs baseline 0']
    """

    name: ClassVar[str] = "probing"
    kind: ClassVar[str] = "probing"
    subject_types: ClassVar[tuple[str, ...]] = ("ip",)
    FEATURES: ClassVar[tuple[Feature, ...]] = (
        Feature("error_paths", "distinct paths answered 4xx"),
        Feature("sensitive_paths", "sensitive files requested"),
        Feature("scanner_requests", "requests with a scanner user agent"),
        Feature("errors", "requests answered 400/403/404/405"),
        Feature("payload_requests", "requests with an attack payload"),
        Feature("bad_requests", "malformed request lines"),
        Feature("bad_versions", "requests with an invalid HTTP version"),
        Feature("probe_paths", "admin and plugin paths probed"),
        Feature("enumerated_users", "user ids enumerated"),
        Feature("proxy_requests", "refused proxy requests"),
    )

    def __init__(
        self,
        min_error_paths: int = 11,
        min_sensitive_paths: int = 5,
        min_scanner_requests: int = 2,
        min_errors: int = 30,
        min_error_ratio: float = 0.5,
        min_payload_requests: int = 3,
        min_bad_requests: int = 5,
        min_bad_versions: int = 1,
        min_probe_paths: int = 3,
        min_enumerated_users: int = 5,
        min_proxy_requests: int = 1,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.min_error_paths = min_error_paths
        self.min_sensitive_paths = min_sensitive_paths
        self.min_scanner_requests = min_scanner_requests
        self.min_errors = min_errors
        self.min_error_ratio = min_error_ratio
        self.min_payload_requests = min_payload_requests
        self.min_bad_requests = min_bad_requests
        self.min_bad_versions = min_bad_versions
        self.min_probe_paths = min_probe_paths
        self.min_enumerated_users = min_enumerated_users
        self.min_proxy_requests = min_proxy_requests

    def _quiet(self, X: Columns, n: int) -> np.ndarray:
        return (
            (column(X, "error_paths", n) < self.min_error_paths)
            & (column(X, "sensitive_paths", n) < self.min_sensitive_paths)
            & (column(X, "scanner_requests", n) < self.min_scanner_requests)
            & (column(X, "errors", n) < self.min_errors)
            & (column(X, "payload_requests", n) < self.min_payload_requests)
            & (column(X, "bad_requests", n) < self.min_bad_requests)
            & (column(X, "bad_versions", n) < self.min_bad_versions)
            & (column(X, "probe_paths", n) < self.min_probe_paths)
            & (column(X, "enumerated_users", n) < self.min_enumerated_users)
            & (column(X, "proxy_requests", n) < self.min_proxy_requests)
        )

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        share = over(x.get("error_ratio", 0.0), self.min_error_ratio)
        paths = self._count(subject, x, "error_paths", self.min_error_paths)
        errors = self._count(subject, x, "errors", self.min_errors)
        return [
            Signal(min(paths.score, share), paths.deviation),
            self._count(subject, x, "sensitive_paths", self.min_sensitive_paths),
            self._count(subject, x, "scanner_requests", self.min_scanner_requests),
            Signal(min(errors.score, share), errors.deviation),
            self._count(subject, x, "payload_requests", self.min_payload_requests),
            self._count(subject, x, "bad_requests", self.min_bad_requests),
            self._count(subject, x, "bad_versions", self.min_bad_versions),
            self._count(subject, x, "probe_paths", self.min_probe_paths),
            self._count(subject, x, "enumerated_users", self.min_enumerated_users),
            self._count(subject, x, "proxy_requests", self.min_proxy_requests),
        ]
