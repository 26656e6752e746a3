"""Configuration: one TOML file, strict, with every default embedded.

Unknown keys are errors, units live in key names, and every key has a
description (``gatewatch.example.toml`` is generated from them, and a test
keeps it in step). Secrets never live here: components that need one name
the environment variable or file that holds it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.parsers import FORMATS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    shards: int = Field(1, ge=1, le=4096, description="Subject shards (crc32 of the consumer); at least the worker count.")
    workers: int = Field(1, ge=1, le=256, description="Bytewax worker threads in this process.")
    snapshot_interval_s: int = Field(
        10, ge=1, le=3_600, description="How often `run` snapshots its positions and state for restart."
    )


class StoreConfig(_Section):
    path: Path = Field(Path("gatewatch-data"), description="Folder of the store (Parquet segments per table).")
    compact_every_s: int = Field(300, ge=1, le=86_400, description="How often `run` merges small segments.")
    compact_min_files: int = Field(16, ge=2, le=100_000, description="Merge a table once it has this many live files.")


class ConsumerBaselineConfig(_Section):
    enabled: bool = Field(True, description="Run this detector.")
    fading_factor: float = Field(0.1, gt=0, le=1, description="Weight of the newest window in the EW baseline.")
    min_history: int = Field(10, ge=1, le=10_000, description="Windows before a consumer's own baseline is used.")
    z_onset: float = Field(3.0, gt=0, le=100, description="Deviation (in spreads) below which the score is 0.")
    z_scale: float = Field(3.0, gt=0, le=100, description="How fast the score nears 1 beyond z_onset.")
    pseudo_requests: float = Field(10.0, ge=0, le=10_000, description="Pseudo-counts that shrink ratios of small windows.")
    protect_score: float = Field(
        0.5, ge=0, le=1, description="Windows scoring this much against a consumer's own baseline are not learned."
    )


class DetectorsConfig(_Section):
    min_score: float = Field(0.5, ge=0, le=1, description="A score at or above this is stored as a finding.")
    consumer_baseline: ConsumerBaselineConfig = ConsumerBaselineConfig()


class PolicyConfig(_Section):
    mode: Literal["dry-run"] = Field(
        "dry-run", description="dry-run: decide and record, send nothing (gateway enforcement is not built yet)."
    )
    restrict_score: float = Field(0.8, ge=0, le=1, description="A finding at or above this restricts its subject.")
    ttl_s: int = Field(3600, ge=60, le=30 * 86_400, description="A restriction reverts by itself after this long.")
    limit_factor: float = Field(2.0, ge=1, le=100, description="Restricted limit = baseline rate x this factor.")
    min_limit_per_min: int = Field(10, ge=1, le=1_000_000, description="The restricted limit is never below this.")


class DashboardConfig(_Section):
    address: str = Field("127.0.0.1", description="Address the dashboard listens on.")
    port: int = Field(8501, ge=1, le=65_535, description="Port the dashboard listens on.")
    refresh_s: int = Field(5, ge=1, le=3_600, description="How often dashboard pages refresh themselves.")


class Config(_Section):
    input: InputConfig = InputConfig()
    pipeline: PipelineConfig = PipelineConfig()
    store: StoreConfig = StoreConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    policy: PolicyConfig = PolicyConfig()
    dashboard: DashboardConfig = DashboardConfig()


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
    return problems


def example_toml() -> str:
    """Render every key with its default and description (``gatewatch.example.toml``)."""
    lines = [
        "# gatewatch configuration: every key with its default.",
        "# Generated from flows/config.py (a test keeps the two in step).",
        "# Secrets never go here: they come from the environment.",
    ]

    def render(model: type[BaseModel], prefix: str) -> None:
        nested = []
        body = []
        for name, field in model.model_fields.items():
            default = field.default
            if isinstance(default, BaseModel):
                nested.append((name, type(default)))
                continue
            body.append(f"# {field.description}")
            body.append(f"{name} = {_toml_value(default)}")
        if body:
            lines.extend(["", f"[{prefix}]", *body])
        for name, sub in nested:
            render(sub, f"{prefix}.{name}" if prefix else name)

    render(Config, "")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
