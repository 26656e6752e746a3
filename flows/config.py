"""Configuration: one TOML file, strict, with every default embedded.

Unknown keys are errors, units live in key names, and every key has a
description (``gatewatch.example.toml`` is generated from them, and a test
keeps it in step). Secrets never live here: components that need one name
the environment variable or file that holds it.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gatewatch.detectors import DETECTORS
from gatewatch.flows.credentials import DEFAULT_OPERATORS_ENV
from gatewatch.flows.parsers import FORMATS
from gatewatch.flows.parsers.jsonl import JsonMapping


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_KAFKA_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_KAFKA_TLS = ("SSL", "SASL_SSL")
_KAFKA_ENV = r"^([A-Za-z_][A-Za-z0-9_]*)?$"  # an environment variable's name, or "" (as _SECRET_ENV below)
# keys that mean something only with some security protocols: set to anything but their default
# under another, they are refused (the keys with checks of their own refuse it there)
_KAFKA_PROTOCOL_KEYS = {
    **dict.fromkeys(("sasl_mechanism", "sasl_password_env"), _KAFKA_SASL),
    **dict.fromkeys(("ssl_ca_file", "ssl_certificate_file", "ssl_key_password_env", "ssl_check_hostname"), _KAFKA_TLS),
}


def _kafka_needs(kinds: tuple[str, ...], key: str, info) -> None:
    """Refuse ``key``, set, when ``security_protocol`` is not one of ``kinds`` (SASL or TLS keys)."""
    protocol = info.data.get("security_protocol")
    if protocol is not None and protocol not in kinds:
        msg = f"{key} is only used with security_protocol {' or '.join(kinds)}, and it is {protocol}"
        raise ValueError(msg)


class InputKafkaConfig(_Section):
    """``gatewatch run --kafka``: how to reach the brokers, and the consumer group lag tools watch.

    Checks that need no I/O are here, each error at its own key; unreadable
    secrets and TLS files are found at start (flows/kafka.py: kafka_problems).
    """

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How gatewatch talks to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS)."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with SASL_*): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    sasl_username: str = Field("", validate_default=True, description="SASL user name (required with SASL_*).")
    sasl_password_env: str = Field(
        "", pattern=_KAFKA_ENV, description="Environment variable holding the SASL password (with SASL_*; or sasl_password_file)."
    )
    sasl_password_file: str = Field(
        "", validate_default=True, description="File holding the SASL password (with SASL_*; or sasl_password_env)."
    )
    ssl_ca_file: str = Field(
        "", description="PEM file (or folder) of the CAs that signed the brokers' certificates (with SSL / SASL_SSL); empty: the system's CAs."
    )
    ssl_certificate_file: str = Field(
        "", description="PEM client certificate, for brokers that authenticate clients by TLS (with ssl_key_file)."
    )
    ssl_key_file: str = Field("", validate_default=True, description="PEM private key of ssl_certificate_file.")
    ssl_key_password_env: str = Field(
        "", pattern=_KAFKA_ENV, description="Environment variable holding the password of an encrypted ssl_key_file (empty: not encrypted)."
    )
    ssl_check_hostname: bool = Field(True, description="Check that a broker's certificate names the host gatewatch connected to.")
    group_id: str = Field(
        "", max_length=255, pattern=r"^\S*$",
        description="Consumer group gatewatch commits its offsets to (with commit_offsets); give gatewatch a group of its own.",
    )  # fmt: skip
    commit_offsets: bool = Field(
        False,
        description="Commit to group_id the offsets whose lines are in the store and snapshot, so lag tools see gatewatch's lag; never read back (gatewatch resumes from its snapshots).",
    )

    @field_validator(*_KAFKA_PROTOCOL_KEYS)
    @classmethod
    def _protocol_only(cls, value, info):
        if value != cls.model_fields[info.field_name].default:
            _kafka_needs(_KAFKA_PROTOCOL_KEYS[info.field_name], info.field_name, info)
        return value

    @field_validator("sasl_username")
    @classmethod
    def _sasl_username(cls, value: str, info) -> str:
        protocol = info.data.get("security_protocol")
        if protocol in _KAFKA_SASL and not value:
            msg = f"sasl_username is required with security_protocol {protocol}"
            raise ValueError(msg)
        if value:
            _kafka_needs(_KAFKA_SASL, "sasl_username", info)
        return value

    @field_validator("sasl_password_file")
    @classmethod
    def _sasl_password(cls, value: str, info) -> str:
        protocol = info.data.get("security_protocol")
        if "sasl_password_env" not in info.data:  # already reported at its own key
            return value
        env = info.data["sasl_password_env"]
        if value:
            _kafka_needs(_KAFKA_SASL, "sasl_password_file", info)
        if protocol in _KAFKA_SASL and not (env or value):
            msg = f"sasl_password_env or sasl_password_file is required with security_protocol {protocol}"
            raise ValueError(msg)
        if env and value:
            msg = "set sasl_password_env or sasl_password_file, not both"
            raise ValueError(msg)
        return value

    @field_validator("ssl_key_file")
    @classmethod
    def _key_with_certificate(cls, value: str, info) -> str:
        if value:
            _kafka_needs(_KAFKA_TLS, "ssl_key_file", info)
        certificate = info.data.get("ssl_certificate_file")
        if certificate is not None and bool(certificate) != bool(value):
            msg = "ssl_certificate_file and ssl_key_file go together: set both or neither"
            raise ValueError(msg)
        return value

    @field_validator("ssl_key_password_env")
    @classmethod
    def _password_with_key(cls, value: str, info) -> str:
        if value and not info.data.get("ssl_key_file"):
            msg = "ssl_key_password_env is only used with ssl_key_file (an encrypted key)"
            raise ValueError(msg)
        return value

    @field_validator("commit_offsets")
    @classmethod
    def _commit_needs_group(cls, value: bool, info) -> bool:
        if value and not info.data.get("group_id", "x"):
            msg = "commit_offsets needs group_id: the consumer group to commit to"
            raise ValueError(msg)
        return value


class InputConfig(_Section):
    format: Literal[FORMATS] = Field(  # type: ignore[valid-type]
        "auto", description="Log format of every input: auto-detect per file, or one of the registered parsers."
    )
    poll_ms: int = Field(200, ge=10, le=60_000, description="How often a followed file is checked for new lines.")
    max_batch_bytes: int = Field(
        1 << 20, ge=4096, le=64 << 20, description="Bytes read from one input per batch (bigger: faster replay)."
    )
    max_line_bytes: int = Field(
        65536, ge=1024, le=16 << 20, description="Longer lines are rejected as line_too_long (the rest is skipped)."
    )
    raw_max_bytes: int = Field(4096, ge=64, le=1 << 20, description="Bytes of a rejected line kept in the store.")
    # "json" would shadow BaseModel.json, hence the alias
    json_mapping: JsonMapping = Field(JsonMapping(), alias="json")
    kafka: InputKafkaConfig = InputKafkaConfig()


class PipelineConfig(_Section):
    window_s: int = Field(60, ge=1, le=86_400, description="Length of the tumbling event-time windows.")
    allowed_lateness_s: int = Field(
        10, ge=0, le=86_400, description="A window closes this long (event time) after its end; later events count as late."
    )
    idle_close_s: int = Field(
        5,
        ge=1,
        le=3_600,
        description="When input stays quiet this long, event time is advanced by the wall clock so windows still close.",
    )
    shards: int = Field(
        1, ge=1, le=4096,
        description="Shards per subject family (consumer, client IP, API endpoint; crc32 of the subject); at least the worker count.",
    )  # fmt: skip
    workers: int = Field(1, ge=1, le=256, description="Bytewax worker threads in this process.")
    max_ips_per_window: int = Field(
        50_000, ge=10, le=100_000_000,
        description="Client IPs with a cell of their own per IP shard and window; past it, IPs without baselines share one (subject \"(untracked)\") unless they send again.",
    )  # fmt: skip
    max_consumers_per_window: int = Field(
        50_000, ge=10, le=100_000_000,
        description="(API, consumer) cells per consumer shard and window; past it, consumers without baselines share one per API (traffic rows for the consumer \"~overflow\", not scored) unless they send again.",
    )  # fmt: skip
    max_endpoints_per_window: int = Field(
        50_000, ge=10, le=100_000_000,
        description="Endpoints with a cell of their own per API shard and window; past it, endpoints without baselines are counted together (subject \"(untracked)\") unless they are called again.",
    )  # fmt: skip
    snapshot_interval_s: int = Field(
        10, ge=1, le=3_600, description="How often `run` snapshots its positions and state for restart."
    )
    connect_timeout_s: int = Field(
        60, ge=0, le=86_400,
        description="In a cluster (-i/-a), how long a process waits for all the others before it stops with an error (0: for ever).",
    )  # fmt: skip


class StoreConfig(_Section):
    path: Path = Field(Path("gatewatch-data"), description="Folder of the store (Parquet segments per table).")
    compact_every_s: int = Field(300, ge=1, le=86_400, description="How often `run` merges small segments.")
    compact_min_files: int = Field(16, ge=2, le=100_000, description="Merge a table once it has this many live files.")


class _DetectorSection(_Section):
    enabled: bool = Field(True, description="Run this detector.")
    z_onset: float = Field(
        3.0, gt=0, le=100, description="Spreads above a subject's own baseline that lift a threshold (or score 0.5)."
    )


# The longer horizons every family also judges, sliding by the window, and the key of their
# sections in each detector that runs on them ([detectors.brute_force.over_10m] ...).
HORIZONS: dict[str, int] = {"over_10m": 600, "over_1h": 3600}


class _HorizonSection(_Section):
    enabled: bool = Field(True, description="Judge this horizon.")


class CredentialStuffingHorizon(_HorizonSection):
    min_failing_ips: int = Field(30, ge=1, le=1_000_000, description="Distinct failing client IPs over the horizon that score 0.5.")
    min_failing_subnets: int = Field(15, ge=1, le=1_000_000, description="Distinct failing /24 subnets over the horizon that score 0.5.")
    min_failure_ratio: float = Field(0.3, gt=0, le=1, description="Share of failed authentications that scores 0.5.")


class CredentialStuffingConfig(_DetectorSection):
    min_failing_ips: int = Field(20, ge=1, le=1_000_000, description="Distinct failing client IPs in a window that score 0.5.")
    min_failing_subnets: int = Field(
        10, ge=1, le=1_000_000, description="Distinct failing /24 subnets in a window that score 0.5."
    )
    min_failure_ratio: float = Field(0.3, gt=0, le=1, description="Share of failed authentications that scores 0.5.")
    over_10m: CredentialStuffingHorizon = CredentialStuffingHorizon()
    over_1h: CredentialStuffingHorizon = CredentialStuffingHorizon(min_failing_ips=60, min_failing_subnets=30)


class BruteForceHorizon(_HorizonSection):
    min_auth_failures: int = Field(15, ge=1, le=1_000_000, description="Failed authentications from one IP over the horizon that score 0.5.")
    min_failure_ratio: float = Field(0.2, ge=0, le=1, description="Share of the IP's requests that must fail for the failure signal.")
    min_login_attempts: int = Field(30, ge=1, le=1_000_000, description="Login attempts from one IP over the horizon that score 0.5.")
    min_login_share: float = Field(0.3, ge=0, le=1, description="Share of the IP's requests that must be login attempts for the login signal.")


class BruteForceConfig(_DetectorSection):
    min_auth_failures: int = Field(6, ge=1, le=1_000_000, description="Failed authentications from one IP in a window that score 0.5.")
    min_failure_ratio: float = Field(0.2, ge=0, le=1, description="Share of the IP's requests that must fail for the failure signal.")
    min_login_burst: int = Field(6, ge=1, le=1_000_000, description="Login attempts from one IP within 10 s that score 0.5.")
    min_login_share: float = Field(
        0.3, ge=0, le=1, description="Share of the IP's requests that must be login attempts for the burst signal."
    )
    over_10m: BruteForceHorizon = BruteForceHorizon()
    over_1h: BruteForceHorizon = BruteForceHorizon(min_auth_failures=40, min_login_attempts=100)


class ScrapingHorizon(_HorizonSection):
    min_distinct_paths: int = Field(150, ge=1, le=1_000_000, description="Distinct non-static paths one IP reads over the horizon that score 0.5.")
    min_sequential_ids: int = Field(60, ge=1, le=1_000_000, description="Ids one IP reads in sequence over the horizon that score 0.5.")
    max_write_ratio: float = Field(0.1, ge=0, le=1, description="Above this share of writes an IP is not scraping.")


class ScrapingConfig(_DetectorSection):
    min_distinct_paths: int = Field(
        40, ge=1, le=1_000_000, description="Distinct non-static paths one IP reads in a window that score 0.5."
    )
    min_sequential_ids: int = Field(20, ge=1, le=1_000_000, description="Ids one IP reads in sequence in a window that score 0.5.")
    min_requests: int = Field(30, ge=2, le=1_000_000, description="Requests in a window before timing regularity counts.")
    min_regularity: float = Field(0.6, gt=0, le=1, description="Timing regularity (1 - CV of the gaps) that scores 0.5.")
    min_detail_ratio: float = Field(
        0.5, ge=0, le=1, description="Share of requests on detail resources needed for the regularity signal."
    )
    max_write_ratio: float = Field(0.1, ge=0, le=1, description="Above this share of writes an IP is not scraping.")
    over_10m: ScrapingHorizon = ScrapingHorizon()
    over_1h: ScrapingHorizon = ScrapingHorizon(min_distinct_paths=250, min_sequential_ids=150)


class FloodingConfig(_DetectorSection):
    min_factor: float = Field(4.0, ge=1, le=10_000, description="Requests must reach this multiple of the baseline to score 0.5.")
    min_requests: int = Field(60, ge=1, le=100_000_000, description="And at least this many in the window.")
    min_throttled: int = Field(10, ge=1, le=100_000_000, description="Throttled requests in a window that score 0.5 (with the share).")
    min_throttled_ratio: float = Field(0.5, gt=0, le=1, description="Share of throttled requests that scores 0.5 (with the count).")
    min_queries_per_path: int = Field(
        30, ge=1, le=1_000_000, description="Distinct query strings one IP sends to one path in a window (cache busting) that score 0.5."
    )
    min_distinct_uas: int = Field(10, ge=1, le=1_000_000, description="Distinct user agents from one IP in a window that score 0.5 (with the share).")
    min_ua_share: float = Field(0.5, gt=0, le=1, description="Distinct user agents per request needed for the switching-agents signal.")
    new_factor: float = Field(
        4.0, ge=1, le=10_000, description="A consumer or endpoint in its first windows: requests that reach this multiple of its peers' median baseline score 0.5."
    )
    new_windows: int = Field(10, ge=0, le=100_000, description="Windows after its first in which a consumer or endpoint is judged against its peers.")


class KeyCompromiseConfig(_DetectorSection):
    min_new_subnets: int = Field(5, ge=1, le=1_000_000, description="Never-seen /24 subnets of a consumer in a window that score 0.5.")


class ProbingHorizon(_HorizonSection):
    min_error_paths: int = Field(20, ge=1, le=1_000_000, description="Distinct paths answered 400/403/404/405 over the horizon that score 0.5.")
    min_sensitive_paths: int = Field(6, ge=1, le=1_000_000, description="Distinct sensitive files over the horizon that score 0.5.")
    min_errors: int = Field(60, ge=1, le=1_000_000, description="400/403/404/405 answers over the horizon for the error-burst signal.")
    min_error_ratio: float = Field(0.5, gt=0, le=1, description="Share of such answers for the error-paths and error-burst signals.")
    min_payload_requests: int = Field(6, ge=1, le=1_000_000, description="Requests carrying an attack payload over the horizon that score 0.5.")
    min_bad_requests: int = Field(10, ge=1, le=1_000_000, description="Malformed request lines over the horizon that score 0.5.")


class ProbingConfig(_DetectorSection):
    min_error_paths: int = Field(11, ge=1, le=1_000_000, description="Distinct paths answered 400/403/404/405 that score 0.5.")
    min_sensitive_paths: int = Field(5, ge=1, le=1_000_000, description="Distinct sensitive files (/.env, /.git/HEAD ...) that score 0.5.")
    min_scanner_requests: int = Field(2, ge=1, le=1_000_000, description="Requests with a scanner user agent that score 0.5.")
    min_errors: int = Field(30, ge=1, le=1_000_000, description="400/403/404/405 answers in a window for the error-burst signal.")
    min_error_ratio: float = Field(0.5, gt=0, le=1, description="Share of such answers for the error-paths and error-burst signals.")
    min_payload_requests: int = Field(
        3, ge=1, le=1_000_000, description="Requests carrying SQL injection, XSS, path traversal or command injection that score 0.5."
    )
    min_bad_requests: int = Field(5, ge=1, le=1_000_000, description="Malformed request lines (TLS handshakes, invalid versions) that score 0.5.")
    min_bad_versions: int = Field(1, ge=1, le=1_000_000, description="Request lines that are HTTP but for an invalid version (GET / HTTP/1.2) that score 0.5.")
    min_probe_paths: int = Field(
        3, ge=1, le=1_000_000, description="Distinct admin-console or WordPress plugin paths answered 403/404 that score 0.5."
    )
    min_enumerated_users: int = Field(5, ge=1, le=1_000_000, description="Distinct author=N values one IP requests in a window that score 0.5.")
    min_proxy_requests: int = Field(1, ge=1, le=1_000_000, description="Refused requests to use the server as a proxy (CONNECT, absolute URIs) that score 0.5.")
    over_10m: ProbingHorizon = ProbingHorizon()
    over_1h: ProbingHorizon = ProbingHorizon(
        min_error_paths=40, min_sensitive_paths=10, min_errors=150, min_payload_requests=10, min_bad_requests=20
    )


class FormSpamHorizon(_HorizonSection):
    min_hasty_posts: int = Field(2, ge=1, le=1_000_000, description="Forms one IP posts within 2 s of loading them over the horizon that score 0.5.")


class FormSpamConfig(_DetectorSection):
    min_hasty_posts: int = Field(2, ge=1, le=1_000_000, description="Forms one IP posts within 2 s of loading them in a window that score 0.5.")
    over_10m: FormSpamHorizon = FormSpamHorizon()
    over_1h: FormSpamHorizon = FormSpamHorizon()


class AnomalyConfig(_DetectorSection):
    z_onset: float = Field(4.0, gt=0, le=100, description="Spreads above a subject's own baseline (largest feature) that score 0.5.")
    n_trees: int = Field(50, ge=1, le=1000, description="Half-space trees in the forest (one forest per subject type).")
    height: int = Field(6, ge=1, le=20, description="Depth of each tree.")
    window_size: int = Field(100, ge=10, le=100_000, description="Subject-windows per reference window of the trees.")
    hst_onset: float = Field(0.5, gt=0, le=1, description="The trees' anomaly score that scores 0.5.")
    seed: int = Field(0, ge=0, description="Seed of the trees.")


class DetectorsConfig(_Section):
    min_score: float = Field(0.5, ge=0, le=1, description="A score at or above this is stored as a finding.")
    fading_factor: float = Field(0.1, gt=0, le=1, description="Weight of the newest window in the EW baselines.")
    min_history: int = Field(10, ge=1, le=10_000, description="Windows before a subject's own baseline is used.")
    protect_score: float = Field(
        0.5, ge=0, le=1, description="A window scoring this much (any detector) is not learned into the subject's baselines."
    )
    forget_idle_s: int = Field(
        7 * 86_400, ge=60, le=365 * 86_400, description="A consumer or endpoint idle this long (event time) loses its baselines."
    )
    forget_idle_ip_s: int = Field(86_400, ge=60, le=365 * 86_400, description="A client IP idle this long loses its baselines.")
    max_tracked_ips: int = Field(
        200_000, ge=10, le=100_000_000,
        description="Client IPs with baselines per IP shard; past it, IPs seen in one window go first, then the least recently seen.",
    )  # fmt: skip
    max_tracked_subjects: int = Field(
        200_000, ge=10, le=100_000_000,
        description="Consumers or endpoints with baselines per shard; past it, those seen in one window go first, then the least recent.",
    )  # fmt: skip
    credential_stuffing: CredentialStuffingConfig = CredentialStuffingConfig()
    brute_force: BruteForceConfig = BruteForceConfig()
    scraping: ScrapingConfig = ScrapingConfig()
    flooding: FloodingConfig = FloodingConfig()
    key_compromise: KeyCompromiseConfig = KeyCompromiseConfig()
    probing: ProbingConfig = ProbingConfig()
    form_spam: FormSpamConfig = FormSpamConfig()
    anomaly: AnomalyConfig = AnomalyConfig()


class PolicyConfig(_Section):
    mode: Literal["dry-run", "enforce"] = Field(
        "dry-run", description="dry-run: decide and record, send nothing; enforce: deliver decisions to the [targets]."
    )
    elevate_score: float = Field(
        0.6, ge=0, le=1, description="A finding at or above this puts its subject on the elevated (watched) tier; no gateway change."
    )
    restrict_score: float = Field(0.8, ge=0, le=1, description="A finding at or above this restricts its subject to a limit.")
    block_score: float = Field(0.97, ge=0, le=1, description="A finding at or above this blocks its subject.")
    hold_margin: float = Field(
        0.2, ge=0, le=1,
        description="Hysteresis: a subject stays on its tier (TTL extended) while findings score at least the tier's threshold minus this.",
    )  # fmt: skip
    ttl_s: int = Field(3600, ge=60, le=30 * 86_400, description="A decision reverts by itself this long (event time) after its last finding.")
    max_ttl_s: int = Field(7 * 86_400, ge=60, le=90 * 86_400, description="TTLs grown for repeat offenders never exceed this.")
    repeat_window_s: int = Field(
        86_400, ge=0, le=90 * 86_400, description="Earlier decisions within this much event time make a subject a repeat offender."
    )
    ttl_escalation_factor: float = Field(
        2.0, ge=1, le=100, description="Each earlier restriction within repeat_window_s multiplies the TTL by this."
    )
    escalate_after: int = Field(
        2, ge=1, le=1000, description="After this many earlier restrictions within repeat_window_s, the next one is a block."
    )
    limit_factor: float = Field(2.0, ge=1, le=100, description="Restricted limit = baseline rate x this factor.")
    min_limit_per_min: int = Field(10, ge=1, le=1_000_000, description="The restricted limit is never below this.")
    review_tiers: list[Literal["elevated", "restricted", "blocked"]] = Field(
        ["blocked"], description="In enforce mode, decisions on these tiers wait for a person (gatewatch decisions approve ID)."
    )
    allowlist_consumers: list[str] = Field([], description="Consumer ids that are never restricted or blocked.")
    allowlist_cidrs: list[str] = Field(
        [], description='Client IPs / networks that are never restricted or blocked, e.g. ["10.0.0.0/8", "192.0.2.7"].'
    )
    max_restricted_share: float = Field(
        0.1, gt=0, le=1,
        description="Blast radius: at most this share of active consumers restricted or blocked at once (never below one); past it, decisions are suppressed.",
    )  # fmt: skip
    max_restricted_count: int = Field(
        50, ge=1, le=1_000_000, description="Blast radius: at most this many consumers restricted or blocked at once."
    )
    active_window_s: int = Field(
        3600, ge=60, le=30 * 86_400, description="A consumer with traffic in this much event time counts as active (blast radius)."
    )

    @field_validator("allowlist_cidrs")
    @classmethod
    def _networks(cls, cidrs: list[str]) -> list[str]:
        import ipaddress

        bad = []
        for c in cidrs:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                bad.append(c)
        if bad:
            msg = f"not an IP address or network: {', '.join(bad)}"
            raise ValueError(msg)
        return cidrs

    @model_validator(mode="after")
    def _ordered_scores(self) -> PolicyConfig:
        if not self.elevate_score <= self.restrict_score <= self.block_score:
            msg = "scores must satisfy elevate_score <= restrict_score <= block_score"
            raise ValueError(msg)
        return self


_SECRET_ENV = r"^([A-Za-z_][A-Za-z0-9_]*)?$"


class Wso2TargetConfig(_Section):
    enabled: bool = Field(False, description="Push decisions to WSO2 API-M (Admin API v4 deny policies, Publisher API v4).")
    name: str = Field("wso2", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Destination name in the outbox and deliveries table.")
    base_url: str = Field("https://localhost:9443", pattern=r"^https?://", description="API-M control plane (DCR, /oauth2/token, REST APIs).")
    version: str = Field("4.4.0", pattern=r"^4\.\d+(\.\d+)?$", description="API-M version; it decides which calls are used (change-business-plan needs 4.4+).")
    username: str = Field("admin", min_length=1, description="Admin user for client registration and the password grant.")
    password_env: str = Field(
        "GATEWATCH_WSO2_PASSWORD", pattern=_SECRET_ENV, description="Environment variable holding the admin password."
    )
    password_file: str = Field("", description="File holding the admin password (used when password_env is empty).")
    verify_tls: bool = Field(True, description="Check the server's TLS certificate.")
    ca_file: str = Field("", description="PEM file of the CA (or self-signed certificate) that signed the server's; empty: the system's CAs.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of one HTTP call (the outbox retries).")
    block_with: Literal["deny_policy", "subscriptions"] = Field(
        "deny_policy",
        description="Block a consumer with an APPLICATION deny policy (owner:appName), or by blocking its subscriptions.",
    )
    restrict_business_plan: str = Field(
        "", description="Subscription tier restricted consumers are moved to (change-business-plan, 4.4+); empty: restricting changes nothing here."
    )
    api_ids: list[str] = Field([], description="Look up subscriptions of these API ids only (empty: every subscription).")
    ip_custom_policy: bool = Field(
        False, description="Restrict IP subjects with a custom Siddhi policy keyed on $clientIp (super tenant only)."
    )

    @model_validator(mode="after")
    def _plan_needs_44(self) -> Wso2TargetConfig:
        major_minor = tuple(int(p) for p in self.version.split(".")[:2])
        if self.restrict_business_plan and major_minor < (4, 4):
            msg = f"restrict_business_plan needs API-M 4.4 or later (change-business-plan); version is {self.version}"
            raise ValueError(msg)
        return self


class KongTargetConfig(_Section):
    enabled: bool = Field(False, description="Push decisions to Kong's Admin API (rate-limiting, request-termination, ip-restriction).")
    name: str = Field("kong", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Destination name in the outbox and deliveries table.")
    admin_url: str = Field("http://127.0.0.1:8001", pattern=r"^https?://", description="Kong Admin API (not available in DB-less mode).")
    admin_token_env: str = Field(
        "", pattern=_SECRET_ENV, description="Environment variable holding a Kong-Admin-Token (Enterprise RBAC; empty: none)."
    )
    verify_tls: bool = Field(True, description="Check the server's TLS certificate.")
    ca_file: str = Field("", description="PEM file of the CA (or self-signed certificate) that signed the server's; empty: the system's CAs.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of one HTTP call (the outbox retries).")
    block_status_code: int = Field(403, ge=400, le=599, description="Status a blocked consumer gets (request-termination).")
    block_message: str = Field("Access suspended", min_length=1, description="Message a blocked consumer gets.")


class WebhookTargetConfig(_Section):
    enabled: bool = Field(False, description="POST every gateway change as signed JSON (Standard Webhooks) for any other traffic manager.")
    name: str = Field("webhook", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Destination name in the outbox and deliveries table.")
    url: str = Field("", pattern=r"^(https?://.*)?$", description="Where to POST (required when enabled).")
    secret_env: str = Field(
        "GATEWATCH_TARGET_WEBHOOK_SECRET", pattern=_SECRET_ENV, description="Environment variable holding the signing secret (whsec_...)."
    )
    secret_file: str = Field("", description="File holding the signing secret (used when secret_env is empty).")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of one HTTP call (the outbox retries).")
    verify_tls: bool = Field(True, description="Check the server's TLS certificate.")
    ca_file: str = Field("", description="PEM file of the CA (or self-signed certificate) that signed the server's; empty: the system's CAs.")

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookTargetConfig:
        if self.enabled and not self.url:
            msg = "url is required when the webhook target is enabled"
            raise ValueError(msg)
        return self


class TargetsConfig(_Section):
    wso2: Wso2TargetConfig = Wso2TargetConfig()
    kong: KongTargetConfig = KongTargetConfig()
    webhook: WebhookTargetConfig = WebhookTargetConfig()


class DeliveryConfig(_Section):
    max_attempts: int = Field(8, ge=1, le=1000, description="Attempts per outbox entry before it is dead-lettered.")
    backoff_base_s: float = Field(1.0, ge=0, le=3600, description="First retry waits up to this long (full jitter, doubling).")
    backoff_max_s: float = Field(300.0, ge=0, le=86_400, description="No retry waits longer than this (unless Retry-After says so).")
    breaker_failures: int = Field(5, ge=1, le=1000, description="Consecutive failures that open a destination's circuit breaker.")
    breaker_cooldown_s: float = Field(30.0, ge=0, le=3600, description="An open breaker waits this long before one trial call.")
    interval_s: float = Field(0.5, gt=0, le=60, description="How often the control loop runs the policy and the sender.")


_HOST_NAME = r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?$|^[0-9A-Fa-f:.]{2,45}$"  # a DNS name (*.wildcard) or an IP


class DashboardConfig(_Section):
    address: str = Field("127.0.0.1", description="Address the dashboard listens on.")
    port: int = Field(8501, ge=1, le=65_535, description="Port the dashboard listens on.")
    refresh_s: int = Field(5, ge=1, le=3_600, description="How often dashboard pages refresh themselves.")
    operators_env: str = Field(
        DEFAULT_OPERATORS_ENV, pattern=_SECRET_ENV,
        description="Environment variable holding the operators' sign-in tokens, NAME:TOKEN pairs separated by commas; unset, and without operators_file, the dashboard is read-only.",
    )  # fmt: skip
    operators_file: str = Field(
        "", description="File holding the operators' tokens, one NAME:TOKEN a line, instead of operators_env; read again at every sign-in and action."
    )
    allowed_hosts: list[Annotated[str, Field(pattern=_HOST_NAME)]] = Field(
        [], max_length=64,
        description='Host names (or addresses) browsers reach the dashboard by, beyond localhost, 127.0.0.1, ::1 and address; the live connection refuses any other, e.g. ["gatewatch.example.com"].',
    )  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _one_operators_source(cls, data):
        if isinstance(data, dict) and data.get("operators_file") and data.get("operators_env"):
            msg = 'set operators_env or operators_file, not both (operators_env = "" to use the file)'
            raise ValueError(msg)
        return data


class MetricsConfig(_Section):
    enabled: bool = Field(False, description="gatewatch run serves Prometheus metrics at /metrics, and /healthz and /readyz.")
    address: str = Field("127.0.0.1", description="Address the metrics endpoint listens on.")
    port: int = Field(
        9464, ge=1, le=65_535, description="Port of the metrics endpoint; a cluster's process N listens on this port + N."
    )


class ApiConfig(_Section):
    enabled: bool = Field(
        False, description="gatewatch run serves the decision and risk API (CrowdSec bouncers, POST /v1/score) in a process of its own."
    )
    address: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8089, ge=1, le=65_535, description="Port the API listens on.")
    keys_env: str = Field(
        "GATEWATCH_API_KEYS", pattern=_SECRET_ENV,
        description="Environment variable holding the callers' keys, NAME:KEY pairs separated by commas.",
    )  # fmt: skip
    keys_file: str = Field("", description="File holding the callers' keys, one NAME:KEY a line (used when keys_env is empty).")
    restricted_type: str = Field(
        "throttle", pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="CrowdSec decision type served for a restricted IP (blocked ones are served as ban).",
    )  # fmt: skip
    refresh_ms: int = Field(500, ge=50, le=60_000, description="How often the API reads the control plane's decisions and findings.")
    score_window_s: int = Field(
        3600, ge=60, le=7 * 86_400, description="POST /v1/score counts a subject's findings from this much event time back."
    )
    max_body_bytes: int = Field(16_384, ge=256, le=1 << 20, description="Larger request bodies are refused (413).")
    max_connections: int = Field(
        512, ge=1, le=100_000,
        description="Client connections open at once; past it a new one is answered 503 and closed (counted).",
    )  # fmt: skip


SEVERITIES = ("info", "warning", "error", "critical")  # PagerDuty's names, lowest first
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Destination(_Section):
    name: str = Field(
        ..., pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["oncall"],
        description="Unique name of the destination (outbox, deliveries table, `alerts test --destination`).",
    )  # fmt: skip
    min_score: float = Field(0.0, ge=0, le=1, description="Notify only incidents whose highest score reaches this.")
    min_severity: Literal[SEVERITIES] = Field(  # type: ignore[valid-type]
        "warning", description="Notify only incidents at least this severe: info, warning, error or critical."
    )
    kinds: list[str] = Field([], description="Finding kinds to notify, e.g. [\"credential_stuffing\"] (empty: every kind).")
    subject_types: list[Literal["consumer", "ip", "api"]] = Field(
        [], description="Subject types to notify: consumer, ip, api (empty: every type)."
    )
    suppress_s: int = Field(
        600, ge=0, le=86_400,
        description="At most one open/escalation notification per incident in this much event time (a resolve always goes).",
    )  # fmt: skip
    timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of one delivery attempt (the outbox retries).")
    verify_tls: bool = Field(True, description="Check the receiver's TLS certificate.")
    ca_file: str = Field("", description="PEM file of the CA (or self-signed certificate) that signed the receiver's; empty: the system's CAs.")

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        known = sorted({d.kind for d in DETECTORS.values()})
        unknown = [k for k in kinds if k not in known]
        if unknown:
            msg = f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(known)}"
            raise ValueError(msg)
        return kinds


class GenericDestination(_Destination):
    type: Literal["generic"] = Field(..., description="Signed JSON per the Standard Webhooks spec.")
    url: str = Field(..., pattern=r"^https?://", examples=["https://alerts.example.com/gatewatch"], description="Where to POST.")
    secret_env: list[Annotated[str, Field(pattern=_ENV_NAME)]] = Field(
        ..., min_length=1, max_length=4, examples=[["GATEWATCH_WEBHOOK_SECRET"]],
        description="Environment variables holding whsec_ secrets; every one signs (list two while rotating).",
    )  # fmt: skip


class SlackDestination(_Destination):
    type: Literal["slack"] = Field(..., description="A Slack incoming webhook (text + blocks).")
    url_env: str = Field(
        ..., pattern=_ENV_NAME, examples=["GATEWATCH_SLACK_URL"],
        description="Environment variable holding the incoming-webhook URL (the URL is the secret).",
    )  # fmt: skip


class PagerDutyDestination(_Destination):
    type: Literal["pagerduty"] = Field(..., description="PagerDuty Events API v2 (trigger, then resolve).")
    url: str = Field("https://events.pagerduty.com/v2/enqueue", pattern=r"^https?://", description="Events API endpoint.")
    routing_key_env: str = Field(
        ..., pattern=_ENV_NAME, examples=["GATEWATCH_PAGERDUTY_KEY"],
        description="Environment variable holding the integration's routing key.",
    )  # fmt: skip


Destination = Annotated[
    Union[GenericDestination, SlackDestination, PagerDutyDestination], Field(discriminator="type")  # noqa: UP007
]


class AlertsConfig(_Section):
    dashboard_url: str = Field(
        "", pattern=r"^(https?://.*)?$", description="Base URL of the dashboard, linked from every alert (empty: no link)."
    )
    resolve_after_s: int = Field(
        300, ge=1, le=7 * 86_400,
        description="Event time without a finding after which an incident resolves; closer findings join it.",
    )  # fmt: skip
    client_ip: Literal["show", "mask", "hash"] = Field(
        "mask", description="Client IPs in alerts: show, mask (IPv4 /24, IPv6 /48) or hash (sha256, pseudonymous)."
    )
    destinations: list[Destination] = Field(
        [], description="Where alerts go, one [[alerts.destinations]] table each (examples below)."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> AlertsConfig:
        names = [d.name for d in self.destinations]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            msg = f"destination names must be unique: {', '.join(twice)}"
            raise ValueError(msg)
        return self


class Config(_Section):
    input: InputConfig = InputConfig()
    pipeline: PipelineConfig = PipelineConfig()
    store: StoreConfig = StoreConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    policy: PolicyConfig = PolicyConfig()
    dashboard: DashboardConfig = DashboardConfig()
    targets: TargetsConfig = TargetsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    alerts: AlertsConfig = AlertsConfig()  # last: its example destinations are arrays of tables


class ConfigError(ValueError):
    """The configuration has problems; ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(err: dict) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file ({exc.strerror})"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from exc


def check_paths(cfg: Config) -> list[str]:
    """Problems with the paths a config names (I/O; used by ``validate``)."""
    problems = []
    store = cfg.store.path
    existing = next((p for p in (store, *store.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        problems.append(f"store.path: {existing} is not a folder")
    elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"store.path: {existing} is not writable")
    t = cfg.targets
    sections = [(f"targets.{n}", s) for n, s in (("wso2", t.wso2), ("kong", t.kong), ("webhook", t.webhook)) if s.enabled]
    sections += [(f"alerts.destinations.{i}", d) for i, d in enumerate(cfg.alerts.destinations)]
    for key, section in sections:
        if section.ca_file:
            try:
                ssl.create_default_context(cafile=section.ca_file)
            except (OSError, ssl.SSLError) as exc:
                problems.append(f"{key}.ca_file: cannot load {section.ca_file} as PEM certificates ({exc})")
    return problems


def example_toml() -> str:
    """Render every key with its default and description (``gatewatch.example.toml``)."""
    lines = [
        "# gatewatch configuration: every key with its default.",
        "# Generated from flows/config.py (a test keeps the two in step).",
        "# Secrets never go here: they come from the environment.",
    ]

    def render(model: BaseModel, prefix: str) -> None:
        nested = []
        body = []
        tables = []
        for name, field in type(model).model_fields.items():
            default = getattr(model, name)  # a section's own defaults, where they differ from its class's
            if isinstance(default, BaseModel):
                nested.append((field.alias or name, default))
                continue
            if _table_models(field.annotation):
                tables.append((name, field))
                continue
            body.append(f"# {field.description}")
            body.append(f"{name} = {_toml_value(default)}")
        if body:
            lines.extend(["", f"[{prefix}]", *body])
        for name, field in tables:
            lines.extend(["", f"# {field.description}"])
            for i, member in enumerate(_table_models(field.annotation)):
                lines.extend(_commented_table(f"{prefix}.{name}", member, common=i == 0))
        for name, sub in nested:
            render(sub, f"{prefix}.{name}" if prefix else name)

    render(Config(), "")
    return "\n".join(lines) + "\n"


def _table_models(annotation: object) -> tuple[type[BaseModel], ...]:
    """The models of a ``list[Model]`` or ``list[Annotated[Union[...], ...]]`` field (arrays of tables)."""
    if get_origin(annotation) is not list:
        return ()
    (item,) = get_args(annotation)
    if get_origin(item) is Annotated:
        item = get_args(item)[0]
    members = get_args(item) if get_origin(item) is Union else (item,)
    return tuple(m for m in members if isinstance(m, type) and issubclass(m, BaseModel))


def _commented_table(key: str, model: type[BaseModel], *, common: bool) -> list[str]:
    """An example ``[[key]]`` table of ``model``, commented out, with placeholders for required keys.

    Keys inherited from a shared base are shown only when ``common`` is set (in the first example).
    """
    fields = sorted(model.model_fields.items(), key=lambda kv: kv[0] != "type")
    own = set(model.__annotations__) | {"name"}
    out = ["#", f"# [[{key}]]"]
    for name, field in fields:
        if not common and name not in own:
            continue
        if name == "type":
            value = get_args(field.annotation)[0]
        elif field.is_required():
            value = field.examples[0]
        else:
            value = field.default
        out.extend([f"# # {field.description}", f"# {name} = {_toml_value(value)}"])
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
