"""The deployment files (Dockerfile, docs/deploy/): what can be checked offline, without a container engine.

docs/deploy/README.md says how each file was also checked with real tools (hadolint, an image
build, docker-compose config, the units under a real systemd).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from gatewatch.flows.config import load_config
from tests.conftest import GATEWATCH, ROOT, gatewatch

DEPLOY = ROOT / "docs" / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
CONTAINER_CONFIG = DEPLOY / "gatewatch.container.toml"
UNITS = ("gatewatch.service", "gatewatch-dashboard.service")
INSTALLED = "/opt/gatewatch/bin/gatewatch"  # where the units expect the console script
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|PASS\b|URL", re.IGNORECASE)


# -- Dockerfile --------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, args = pending.partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    return out


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_the_image_is_built_in_two_stages_and_runs_gatewatch_as_a_non_root_user():
    instructions = _instructions(DOCKERFILE.read_text())
    stages = _stages(instructions)
    assert len(stages) == 2, "a build stage with the compiler, a runtime stage without it"
    build, runtime = stages
    assert any(w == "RUN" and "pip install" in a and " ." in a for w, a in build), (
        "pip install . in the build stage"
    )
    assert not any(w == "RUN" and "[test]" in a for w, a in instructions), "no test extras in the image"
    assert any(w == "RUN" and "gcc" in a for w, a in build)
    assert not any(w == "RUN" and ("gcc" in a or "pip install" in a) for w, a in runtime), (
        "no compiler at run time"
    )
    assert any(w == "COPY" and a.startswith("--from=build ") for w, a in runtime)

    # the last USER of the image is a non-root user, and comes after everything that installs
    users = [(i, a) for i, (w, a) in enumerate(runtime) if w == "USER"]
    assert users, "the runtime stage sets USER"
    last_user_at, user = users[-1]
    name = user.split(":")[0]
    assert name not in ("root", "0") and (not name.isdigit() or int(name) >= 1000), user
    assert all(w != "RUN" for w, _ in runtime[last_user_at:]), "nothing runs as root after USER"

    words = [w for w, _ in instructions]
    assert words.count("ENTRYPOINT") == 1
    entrypoint = dict(instructions)["ENTRYPOINT"]
    assert entrypoint == '["gatewatch"]', entrypoint
    cmd = dict(instructions)["CMD"]
    assert cmd.startswith('["run", "/logs/*.log"') and '"/data"' in cmd, cmd
    assert "HEALTHCHECK" in words
    assert dict(instructions)["EXPOSE"].split() == ["8501", "8089", "9464"]


def test_the_dockerfile_fetches_no_url_and_bakes_in_no_secret():
    instructions = _instructions(DOCKERFILE.read_text())
    for word, args in instructions:
        assert not (word == "ADD" and re.search(r"\b(https?|ftp|git)://|git@", args)), (
            f"ADD of a remote URL: {args}"
        )
        if word in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args):
                assert not SECRET_NAME.search(name), f"{word} {name} looks like a secret: pass it at run time"
    env = " ".join(a for w, a in instructions if w == "ENV")
    for expected in (
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "GATEWATCH_CONFIG=/etc/gatewatch/gatewatch.toml",
    ):
        assert expected in env


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secret():
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    assert ignore[0] == "*", "an allow list: everything is left out unless named"
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert not any(a.endswith(".env") or a in (".venv", ".git", "gatewatch-data") for a in allowed), allowed
    assert "**/*.env" in ignore
    for word, args in _instructions(DOCKERFILE.read_text()):
        if word != "COPY" or args.startswith("--from="):
            continue
        *sources, _dest = args.split()
        for source in sources:
            src = source.rstrip("/")
            assert (ROOT / src).exists(), src
            assert any(src == a or src.startswith(a + "/") for a in allowed), (
                f"COPY {src}: not in .dockerignore's allow list"
            )


def _healthcheck():
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_healthcheck_finds_the_command_with_or_without_an_init():
    hc = _healthcheck()
    direct = b"/opt/gatewatch/bin/python\0/opt/gatewatch/bin/gatewatch\0run\0/logs/*.log\0--store\0/data\0"
    assert hc.container_command(direct) == ("run", None)
    under_init = b"/sbin/docker-init\0--\0gatewatch\0dashboard\0--config\0/etc/x.toml\0"
    assert hc.container_command(under_init) == ("dashboard", "/etc/x.toml")
    assert hc.container_command(b"/bin/sh\0-c\0sleep 1\0") == ("", None)
    assert hc.probe_host("0.0.0.0") == "127.0.0.1"
    assert hc.probe_host("::1") == "[::1]"
    assert hc.status_of("http://127.0.0.1:9/") == 0  # nothing listens on the discard port


# -- container config --------------------------------------------------------


def test_the_container_config_validates_and_listens_beyond_the_container(tmp_path):
    cfg = load_config(CONTAINER_CONFIG)
    assert (cfg.dashboard.address, cfg.api.address, cfg.metrics.address) == ("0.0.0.0",) * 3
    assert (cfg.dashboard.port, cfg.api.port, cfg.metrics.port) == (
        8501,
        8089,
        9464,
    )  # as the Dockerfile EXPOSEs
    assert cfg.api.keys_env == "GATEWATCH_API_KEYS" and not cfg.api.keys_file
    assert "[store]" not in CONTAINER_CONFIG.read_text(), (
        "the image sets the store (/data) by GATEWATCH_STORE"
    )

    env = {"PATH": "/usr/bin:/bin", "GATEWATCH_API_KEYS": "probe:" + "k" * 24}
    proc = gatewatch("validate", "--config", str(CONTAINER_CONFIG), env=env, cwd=tmp_path)
    assert proc.stdout.strip().endswith(": OK")
    assert (
        "dashboard.address: 0.0.0.0 listens beyond this machine" in proc.stderr
    )  # the README tells why it is fine
    # the key comes from the environment only: without it the config does not pass
    missing = gatewatch(
        "validate",
        "--config",
        str(CONTAINER_CONFIG),
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
    )
    assert missing.returncode != 0 and "GATEWATCH_API_KEYS is not set" in missing.stderr


def test_the_env_example_holds_placeholders_that_gatewatch_refuses(tmp_path):
    example = DEPLOY / "gatewatch.env.example"
    values = {}
    for raw in example.read_text().splitlines():
        line = raw.strip().lstrip("#")
        if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line):
            name, _, value = line.partition("=")
            values[name] = value
    assert "GATEWATCH_API_KEYS" in values
    for name, value in values.items():
        placeholders = [v.partition(":")[2] if ":" in v else v for v in value.split(",")]
        assert all(p == "REPLACE_ME" for p in placeholders), f"{name}: a placeholder only, not {value!r}"
    # a copy nobody filled in stops at start rather than serving the example's key
    env = {"PATH": "/usr/bin:/bin", "GATEWATCH_API_KEYS": values["GATEWATCH_API_KEYS"]}
    proc = gatewatch("validate", "--config", str(CONTAINER_CONFIG), env=env, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "16 characters or more" in proc.stderr
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "docs/deploy/gatewatch.env"], cwd=ROOT, check=False, capture_output=True
    )
    if ignored.returncode in (0, 1):  # 128: not a git checkout
        assert ignored.returncode == 0, "the filled-in env file must be ignored by git"


# -- compose -----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_services_share_one_store_and_refer_to_what_exists(compose):
    services = compose["services"]
    assert {"redpanda", "gatewatch-run", "gatewatch-dashboard"} <= set(services)
    declared = set(compose.get("volumes") or {})
    gatewatch_services = [n for n, s in services.items() if s.get("image", "").startswith("gatewatch")]
    assert set(gatewatch_services) == {"gatewatch-run", "gatewatch-dashboard"}
    stores = set()
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
            if target == "/data":
                stores.add(source)
        for dep in service.get("depends_on") or []:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond this host"
    assert len(stores) == 1, f"every gatewatch service mounts the same store volume, not {stores}"
    for name in gatewatch_services:
        service = services[name]
        assert any(m.split(":")[1] == "/data" for m in service["volumes"]), f"{name} does not mount the store"
        assert (
            service["build"]["context"] == "../.."
            and (DEPLOY / service["build"]["context"] / "Dockerfile").is_file()
        )
        assert service.get("read_only") is True and service.get("cap_drop") == ["ALL"]


def test_compose_commands_use_flags_gatewatch_has_and_keep_secrets_in_the_env_file(compose):
    services = compose["services"]
    run = services["gatewatch-run"]["command"]
    assert run[:5] == ["run", "--kafka", "redpanda:9092", "--topic", "gateway-logs"]
    for service in ("gatewatch-run", "gatewatch-dashboard"):
        command = services[service]["command"]
        helped = gatewatch(command[0], "--help").stdout
        for flag in (a for a in command if a.startswith("--")):
            assert flag in helped, f"gatewatch {command[0]} has no {flag}"
    broker = run[2].split(":")[0]
    assert broker in services
    assert "--mode=dev-container" in services[broker]["command"]
    assert services["gatewatch-run"]["env_file"] == ["gatewatch.env"]
    for name, service in services.items():
        env = service.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        for key, value in items:
            assert not (SECRET_NAME.search(key) and value), (
                f"{name}: {key} set inline: put it in gatewatch.env"
            )
    text = (DEPLOY / "compose.yaml").read_text()
    assert not re.search(r"[A-Z_]*(KEY|SECRET|PASSWORD|TOKEN)[A-Z_]*\s*[:=]\s*\S", text), (
        "a secret value inline"
    )


# -- systemd units -----------------------------------------------------------


def _unit(name: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, by key, in order (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for raw in (DEPLOY / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "MemoryDenyWriteExecute": "yes",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
    "User": "gatewatch",
}


@pytest.mark.parametrize("name", UNITS)
def test_units_are_hardened(name):
    unit = _unit(name)
    for key, value in HARDENING.items():
        assert unit.get(key) == [value], f"{name}: {key}={value} (has {unit.get(key)})"
    assert "@system-service" in unit["SystemCallFilter"]
    # Polars' import-time CPU check makes code in memory, which MemoryDenyWriteExecute refuses
    assert "POLARS_SKIP_CPU_CHECK=1" in " ".join(unit["Environment"])
    env = dict(kv.split("=", 1) for line in unit["Environment"] for kv in shlex.split(line))
    store = env["GATEWATCH_STORE"]
    assert store in unit["ReadWritePaths"], f"{name}: the store {store} must be writable"
    assert unit["StateDirectory"] == [store.removeprefix("/var/lib/")]
    command = shlex.split(unit["ExecStart"][0])
    assert command[0] == INSTALLED and command[1] == ("run" if name == "gatewatch.service" else "dashboard")


def test_the_run_unit_reads_its_logs_read_only_and_secrets_from_a_file():
    unit = _unit("gatewatch.service")
    logs = shlex.split(unit["ExecStart"][0])[2:]
    assert logs, "gatewatch run needs files or globs"
    for spec in logs:
        assert any(spec.startswith(path.lstrip("-") + "/") for path in unit["ReadOnlyPaths"]), spec
    assert unit["EnvironmentFile"][0].lstrip("-") == "/etc/gatewatch/gatewatch.env"
    assert _seconds(unit["TimeoutStopSec"][0]) >= 60, "a clean stop needs time to snapshot"
    assert "EnvironmentFile" not in _unit("gatewatch-dashboard.service"), "the dashboard needs no secret"


def test_systemd_analyze_verify_passes(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on PATH (apt-get install systemd)")
    # the units name the installed path; verify wants an executable there, so the copies name this venv's
    paths = []
    for name in UNITS:
        copy = tmp_path / name
        copy.write_text((DEPLOY / name).read_text().replace(INSTALLED, GATEWATCH))
        paths.append(str(copy))
    proc = subprocess.run(
        [analyze, "verify", *paths], capture_output=True, text=True, timeout=120, check=False
    )
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "gatewatch" in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr
