"""Deployment forms, checked without a Docker engine or a cluster.

- Dockerfile: its build-stage RUN lines and its entry point run here, in a fresh venv, as a
  non-root user, with the compose file's default (demo) command; /-/healthy and the image's own
  HEALTHCHECK command must answer.
- compose: `docker-compose config` (schema) plus cross-references (mount sources exist, scrape
  targets, receivers and datasource URLs name real services and ports).
- Kubernetes: the overlay rendered with kustomize, each object validated against the Kubernetes
  OpenAPI schemas (kubernetes-validate, offline), wiring checked, the optional components
  (PrometheusRule equal to the rule file and checked with promtool, ServiceMonitor, the
  dashboard ConfigMap for Grafana's sidecar) rendered and checked.
- Prometheus / Alertmanager configs: promtool / amtool (routing by severity, inhibitions with
  `equal:`). systemd unit: systemd-analyze.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli.main import DEFAULT_LISTEN
from exporter.config.load import load_config
from exporter.config.model import Config
from tests.kit.lab import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
RULES = DEPLOY / "prometheus" / "rules" / "prime-tofu.rules.yml"
K8S = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "prime-tofu-exporter.service"
TEST_USER = "tofu-deploy-test"
EXPORTER_PORT = int(DEFAULT_LISTEN.rpartition(":")[2])


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (.ci/run installs it)")
    return path


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)




def load_remapped(config_file: Path, mapping: dict[str, Path], workdir: Path) -> Config:
    """Load a shipped config with its absolute deployment paths pointed into workdir."""
    text = config_file.read_text()
    for prefix, target in mapping.items():
        text = text.replace(prefix, str(target))
    out = workdir / "config.yml"
    out.write_text(text)
    return load_config(out)


# ---------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str


def parse_dockerfile(path: Path) -> list[list[Instruction]]:
    """Stages of instructions; continuation lines joined, comments dropped."""
    stages: list[list[Instruction]] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        op, _, args = logical.partition(" ")
        logical = ""
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(op.upper(), args.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"{args!r}: use the exec (JSON) form"
    return [str(v) for v in value]


def flags_of(args: str) -> tuple[dict[str, str], str]:
    """'--from=build --chown=x a b' -> ({'from': 'build', ...}, 'a b')."""
    flags: dict[str, str] = {}
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        args = args.strip()
    return flags, args


STAGES = parse_dockerfile(ROOT / "Dockerfile")
BUILD, FINAL = STAGES[0], STAGES[-1]


def ops(stage: list[Instruction], op: str) -> list[str]:
    return [i.args for i in stage if i.op == op]


def test_dockerfile_runtime_stage_is_slim_non_root_and_self_describing() -> None:
    assert len(STAGES) >= 2, "multi-stage: compilers stay in the build stage"
    base = ops(FINAL, "FROM")[0]
    assert re.fullmatch(r"python:3\.11-slim\S*", base), base
    final_runs = " ".join(ops(FINAL, "RUN"))
    for compiler in ("build-essential", "gcc", "g++", "-dev ", "apt-get install"):
        assert compiler not in final_runs, f"{compiler!r} in the runtime stage"
    assert any(flags_of(c)[0].get("from") for c in ops(FINAL, "COPY")), "runtime copies the built venv"

    user = ops(FINAL, "USER")[-1].split(":")[0]
    assert user not in ("root", "0"), "the runtime user must not be root"

    assert ops(FINAL, "EXPOSE") == [str(EXPORTER_PORT)]
    health = ops(FINAL, "HEALTHCHECK")[0]
    assert f"127.0.0.1:{EXPORTER_PORT}/-/healthy" in health

    cmd = exec_form(ops(FINAL, "CMD")[-1])
    storage = next(a.split("=", 1)[1] for a in cmd if a.startswith("--storage.path="))
    volumes = exec_form(ops(FINAL, "VOLUME")[0])
    assert storage in volumes, "the baseline database must live on a volume"
    assert "--config.file=/etc/prime-tofu-exporter/config.yml" in cmd

    labels = " ".join(ops(FINAL, "LABEL"))
    # Version, revision and creation time are build arguments (the version's one source is
    # pyproject.toml; tests/test_image.py builds with them and reads the labels back).
    for arg in ("VERSION", "REVISION", "CREATED"):
        assert arg in ops(FINAL, "ARG")
        assert f'org.opencontainers.image.{arg.lower()}="${{{arg}}}"' in labels
    for key in ("title", "description", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    rules = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*", "allow-list: nothing enters the build context by accident"
    admitted = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for copy in ops(BUILD, "COPY"):
        _, rest = flags_of(copy)
        for src in rest.split()[:-1]:
            assert src in admitted, f"COPY {src} is excluded by .dockerignore"
            assert (ROOT / src).exists()


def _as_user(cmd: list[str]) -> list[str]:
    """Run cmd as the non-root test user when we are root, else as ourselves (already not root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", TEST_USER, "--", *cmd]


def _python_for_user() -> str:
    """A Python 3.11 with venv that the test user may run (pyenv under /root is not one)."""
    for candidate in (sys.executable, "/usr/local/bin/python3.11", "/usr/bin/python3.11"):
        if Path(candidate).exists() and run(
                _as_user([candidate, "-c", "import ensurepip, venv"])).returncode == 0:
            return candidate
    pytest.skip(f"no Python 3.11 with venv that {TEST_USER} may run (Debian: python3-venv)")


@dataclass(frozen=True)
class BuiltImage:
    workdir: Path      # stands for the image's filesystem root parts we need
    venv: Path         # stands for /opt/venv
    install_seconds: float
    size_bytes: int


@pytest.fixture(scope="module")
def built_image() -> Iterator[BuiltImage]:
    """Replay the build stage's RUN lines (all but apt-get) in a fresh venv as a non-root user."""
    if os.geteuid() == 0:
        need("runuser")
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--create-home", "--shell", "/usr/sbin/nologin",
                            TEST_USER], check=True)
    top = Path(tempfile.mkdtemp(prefix="tofu-image-"))
    venv, src, workdir = top / "venv", top / "src", top / "workdir"
    src.mkdir()
    workdir.mkdir()
    for copy in ops(BUILD, "COPY"):
        _, rest = flags_of(copy)
        *sources, _dest = rest.split()
        for name in sources:
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    if os.geteuid() == 0:
        uid = pwd.getpwnam(TEST_USER).pw_uid
        for path in [top, *top.rglob("*")]:
            os.chown(path, uid, uid)
    python = _python_for_user()
    started = time.monotonic()
    try:
        for line in ops(BUILD, "RUN"):
            if line.startswith("apt-get"):
                continue  # system packages of the base image: already here
            script = line.replace("/opt/venv", str(venv)).replace("python ", f"{python} ", 1)
            r = run(_as_user(["sh", "-c", script]), cwd=src)
            assert r.returncode == 0, f"RUN {line}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        seconds = time.monotonic() - started
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        yield BuiltImage(workdir, venv, seconds, size)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def compose_exporter_command(env: dict[str, str] | None = None) -> list[str]:
    service = interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})["services"]["exporter"]
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


SERVE_IN_COMPOSE = "serve --config.file=/etc/prime-tofu-exporter/config.yml"


def test_every_shipped_command_line_parses() -> None:
    """A flag a command does not take is an error (it was accepted and ignored): the command
    lines of compose (demo and serve), the image and the systemd unit must all parse."""
    from exporter.cli.main import _parse

    entry = exec_form(ops(FINAL, "ENTRYPOINT")[0])
    unit = (DEPLOY / "systemd" / "prime-tofu-exporter.service").read_text()
    exec_start = shlex.split(re.search(r"^ExecStart=((?:.*\\\n)*.*)$", unit, re.M)
                             .group(1).replace("\\\n", " "))  # type: ignore[union-attr]
    lines = {"compose demo": compose_exporter_command(),
             "compose serve": compose_exporter_command({"TOFU_COMMAND": SERVE_IN_COMPOSE}),
             "image": exec_form(ops(FINAL, "CMD")[-1]),
             "systemd": exec_start[1:]}
    assert entry[-1].endswith("prime-tofu-exporter") and exec_start[0].endswith("prime-tofu-exporter")
    for where, argv in lines.items():
        args = _parse(argv)
        assert args.storage_path == "/var/lib/prime-tofu-exporter", where
        if args.command != "demo":
            assert args.config_file == "/etc/prime-tofu-exporter/config.yml", where
    assert _parse(lines["compose demo"]).command == "demo"


def test_image_runs_demo_as_non_root_and_answers_its_healthcheck(built_image: BuiltImage) -> None:
    entry = exec_form(ops(FINAL, "ENTRYPOINT")[0])
    command = compose_exporter_command()
    assert command[0] == "demo", "compose starts the demo by default"
    port = free_port()  # the image's :9877 would collide with a developer's running demo
    command = [a if not a.startswith("--web.listen-address=") else f"--web.listen-address=127.0.0.1:{port}"
               for a in command]
    argv = [a.replace("/opt/venv", str(built_image.venv)) for a in entry + command]
    storage = next(a.split("=", 1)[1] for a in command if a.startswith("--storage.path="))
    argv = [a.replace(storage, str(built_image.workdir / "state")) for a in argv]
    env = {"PATH": f"{built_image.venv}/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONUNBUFFERED": "1", "HOME": str(built_image.workdir), "TMPDIR": str(built_image.workdir)}
    proc = subprocess.Popen(_as_user(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]),
                            cwd=built_image.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        healthy = ready = False
        while time.monotonic() < deadline and not ready:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            with contextlib.suppress(OSError):
                healthy = healthy or urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/-/healthy", timeout=2).status == 200
                ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200
            time.sleep(0.2)
        assert healthy and ready, "the demo in the image never became healthy and ready"

        # The image's own HEALTHCHECK command, pointed at this port and venv.
        health = exec_form(ops(FINAL, "HEALTHCHECK")[0].split(" CMD ", 1)[1])
        health = [a.replace("/opt/venv", str(built_image.venv)).replace(f":{EXPORTER_PORT}/", f":{port}/")
                  for a in health]
        assert run(_as_user(health)).returncode == 0

        server_pid = _listener_pid(port)
        uid = _uid_of(server_pid)
        assert uid != 0, "the exporter ran as root"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert re.search(r'tofu_certificate_state\{[^}]*state="mismatch"[^}]*\} 1\.0', metrics), \
            "the demo's regenerated ISE certificate shows as a mismatch"
        rss_kib = _rss_kib(server_pid)
        print(f"\nimage-equivalent venv: {built_image.size_bytes / 2**20:.1f} MiB, "
              f"install {built_image.install_seconds:.1f} s, demo RSS {rss_kib / 1024:.1f} MiB")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _listener_pid(port: int) -> int:
    """The process listening on port (the exporter itself, not runuser around it)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inode = fields[9]
    assert inode, f"nothing listens on {port}"
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) == f"socket:[{inode}]":
                return int(fd.parts[2])
    raise AssertionError(f"no process owns the socket on {port}")


def _status(pid: int, key: str) -> str:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith(key))
    return line.split(":", 1)[1]


def _uid_of(pid: int) -> int:
    return int(_status(pid, "Uid").split()[0])


def _rss_kib(pid: int) -> int:
    return int(_status(pid, "VmRSS").split()[0])


# ---------------------------------------------------------------- compose

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR:-default} interpolation, enough for our file."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def compose_model(env: dict[str, str] | None = None) -> dict[str, Any]:
    model = interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})
    assert isinstance(model, dict)
    return model


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str, bool]]:
    out = []
    for spec in service.get("volumes", []):
        src, dst, *mode = spec.split(":")
        if src.startswith((".", "/")):
            out.append(((COMPOSE.parent / src).resolve(), dst, "ro" in mode))
    return out


def test_compose_file_is_valid_for_docker_compose() -> None:
    tool = need("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOFU_")}
    r = run([tool, "-f", str(COMPOSE), "config", "-q"], env=env)
    assert r.returncode == 0, r.stderr


def test_compose_stack_is_wired_to_files_and_services_that_exist() -> None:
    model = compose_model()
    services = model["services"]
    assert set(services) >= {"exporter", "prometheus", "alertmanager", "grafana"}

    exporter = services["exporter"]
    assert exporter["build"]["context"] == "../.." and (COMPOSE.parent / "../../Dockerfile").exists()
    assert exporter["read_only"] is True
    assert f"{EXPORTER_PORT}:{EXPORTER_PORT}" in exporter["ports"]
    named = {spec.split(":")[0]: spec.split(":")[1] for spec in exporter["volumes"]
             if not spec.startswith((".", "/"))}
    assert named.get("tofu-data") == "/var/lib/prime-tofu-exporter" and "tofu-data" in model["volumes"]
    for _, dst, ro in bind_mounts(exporter):
        assert ro, f"{dst} must be mounted read-only"

    missing_other = []  # files another part of the project ships (rules, dashboards)
    for name, service in services.items():
        for path, dst, _ in bind_mounts(service):
            if not path.exists():
                if path == ROOT / "grafana":
                    missing_other.append(str(path))
                    continue
                raise AssertionError(f"{name}: mount source {path} for {dst} does not exist")
    for secret in model["secrets"].values():
        assert (COMPOSE.parent / secret["file"]).exists()

    # Prometheus reaches the exporter and Alertmanager by service name and port, loads the rules.
    prom_dir = next(p for p, d, _ in bind_mounts(services["prometheus"]) if d == "/etc/prometheus")
    prom = yaml.safe_load((prom_dir / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert f"exporter:{EXPORTER_PORT}" in targets
    am_targets = [t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"]
                  for t in sc["targets"]]
    assert am_targets == ["alertmanager:9093"] and "9093:9093" in services["alertmanager"]["ports"]
    assert prom_dir == DEPLOY / "prometheus" and prom["rule_files"] == ["rules/*.rules.yml"]
    assert RULES.match("*.rules.yml")

    # Alertmanager's example receiver is the alert-sink service on the port it listens on.
    am_dir = next(p for p, d, _ in bind_mounts(services["alertmanager"]) if d == "/etc/alertmanager")
    am = yaml.safe_load((am_dir / "alertmanager.yml").read_text())
    urls = [w["url"] for r in am["receivers"] for w in r.get("webhook_configs", [])]
    sink_port = re.search(r'HTTPServer\(\("", (\d+)\)', (COMPOSE.parent / "alert-sink.py").read_text())
    assert sink_port and urls
    assert all(u.startswith(f"http://alert-sink:{sink_port.group(1)}/") for u in urls), urls

    # Grafana: the datasource is this stack's Prometheus, the provider reads the mounted grafana/.
    provisioning = COMPOSE.parent / "grafana" / "provisioning"
    ds = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "prime-tofu.yml").read_text())
    mounted = {d: p for p, d, _ in bind_mounts(services["grafana"])}
    assert mounted[provider["providers"][0]["options"]["path"]] == ROOT / "grafana"
    if missing_other:
        pytest.skip(f"not yet in the repository (owned by the dashboard work): {missing_other}")
    assert list((ROOT / "grafana").rglob("*.json")), "grafana/ holds no dashboard for the provider"


def test_grafana_is_the_version_the_dashboard_is_built_for() -> None:
    """One Grafana minor everywhere: the compose image, the SDK that builds the dashboard,
    and the schemaVersion that SDK writes (an older Grafana migrates or misdraws it)."""
    sdk = re.search(r'grafana-foundation-sdk==\d+!(\d+\.\d+)\.\d+"',
                    (ROOT / "pyproject.toml").read_text())
    assert sdk, "grafana-foundation-sdk pin not found"
    images = [svc["image"] for svc in yaml.safe_load(COMPOSE.read_text())["services"].values()
              if svc["image"].startswith("grafana/grafana:")]
    images += re.findall(r"grafana/grafana:[\w.-]+", "".join(
        p.read_text() for p in (ROOT / "deploy" / "kubernetes").rglob("*.yaml")))
    assert images, "no Grafana image in deploy/"
    for image in images:
        assert image.split(":")[1].startswith(sdk.group(1) + "."), (image, sdk.group(1))
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / "prime-tofu.json").read_text())
    assert dashboard["schemaVersion"] == 41  # what the 11.6 SDK writes


def test_compose_switches_to_a_real_config(tmp_path: Path) -> None:
    (tmp_path / "pi-password").write_text("s3cret\n")
    env = {"TOFU_COMMAND": SERVE_IN_COMPOSE, "TOFU_CONFIG_DIR": str(tmp_path),
           "TOFU_PASSWORD_FILE": str(tmp_path / "pi-password")}
    model = compose_model(env)
    exporter = model["services"]["exporter"]
    assert compose_exporter_command(env)[:2] == SERVE_IN_COMPOSE.split()
    assert f"{tmp_path}:/etc/prime-tofu-exporter:ro" in exporter["volumes"]
    assert model["secrets"]["pi-password"]["file"] == str(tmp_path / "pi-password")

    # The shipped example config, as the container sees it (secret at /run/secrets/pi-password).
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(COMPOSE.parent / "config" / "known_hosts", etc / "known_hosts")
    cfg = load_remapped(COMPOSE.parent / "config" / "config.yml",
                        {"/etc/prime-tofu-exporter": etc, "/run/secrets": tmp_path}, tmp_path)
    assert [s.name for s in cfg.stores] == ["prime-pri", "prime-sec"]
    assert cfg.stores[0].password == "s3cret"


# ---------------------------------------------------------------- Prometheus, Alertmanager


@pytest.mark.parametrize("config", [DEPLOY / "prometheus" / "prometheus.yml",
                                    K8S / "overlays" / "sharded" / "prometheus-scrape.yml",
                                    K8S / "prometheus" / "scrape-config.yml",
                                    DEPLOY / "prometheus" / "probe-scrape.yml"],
                         ids=["compose", "k8s-sharding", "k8s-plain", "multi-target"])
def test_prometheus_config_passes_promtool(config: Path) -> None:
    r = run([need("promtool"), "check", "config", str(config)])
    assert r.returncode == 0, r.stdout + r.stderr
    if config == DEPLOY / "prometheus" / "prometheus.yml" and RULES.exists():
        assert "1 rule files found" in r.stdout + r.stderr or "rule files found" in r.stdout + r.stderr


ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


def test_alertmanager_config_passes_amtool() -> None:
    r = run([need("amtool"), "check-config", str(ALERTMANAGER_CONFIG)])
    assert r.returncode == 0, r.stdout + r.stderr


def routed_to(**labels: str) -> list[str]:
    r = run([need("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
             *(f"{k}={v}" for k, v in labels.items())])
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split()


def test_alertmanager_pages_only_for_critical_alerts() -> None:
    """Every shipped alert's severity routed the way its comment in the rules promises."""
    rules = rules_or_skip()
    severities = {r["alert"]: r["labels"]["severity"] for g in rules["groups"] for r in g["rules"]
                  if "alert" in r}
    assert set(severities.values()) == {"critical", "warning", "info"}
    for alert, severity in severities.items():
        receivers = routed_to(alertname=alert, severity=severity, job="prime-tofu-exporter",
                              instance="exp:9877", store="prime-pri")
        if severity == "critical":
            assert receivers == ["pager"], (alert, receivers)
        else:
            assert "pager" not in receivers and receivers, (alert, receivers)


def test_alertmanager_inhibitions_are_scoped_by_equal_labels() -> None:
    """An inhibition without `equal:` lets one exporter's outage silence every other one."""
    am = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    assert am["inhibit_rules"]
    for rule in am["inhibit_rules"]:
        assert {"job", "instance"} <= set(rule.get("equal", [])), rule


# ---------------------------------------------------------------- Kubernetes


def kustomize_cmd() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl") and run(["kubectl", "kustomize", "--help"]).returncode == 0:
        return ["kubectl", "kustomize"]
    return None


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    cmd = kustomize_cmd()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl installed: only the per-file schema test runs")
    r = run([*cmd, str(K8S / "overlays" / "example")])
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def validator() -> Any:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install '.[test]' (kubernetes-validate)")
    return kv


CRD_GROUP = "monitoring.coreos.com/"


def test_kubernetes_objects_pass_the_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    kv = validator()
    version = kv.utils.latest_version()
    kinds = set()
    for doc in rendered:
        kinds.add(doc["kind"])
        if doc["apiVersion"].startswith(CRD_GROUP):
            continue  # CRDs: checked by the wiring and rule tests below
        kv.validate(doc, version, strict=True)  # raises on an unknown or mistyped field
    assert kinds == {"ConfigMap", "Secret", "Service", "PersistentVolumeClaim", "Deployment",
                     "ServiceMonitor", "PrometheusRule"}


def test_kubernetes_base_renders_without_the_prometheus_operator() -> None:
    """The base needs no CRD: the Operator's objects come only with their component."""
    cmd = kustomize_cmd()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl installed")
    r = run([*cmd, str(K8S / "base")])
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert not [d for d in docs if d["apiVersion"].startswith(CRD_GROUP)]
    assert {d["kind"] for d in docs} == {"ConfigMap", "Service", "PersistentVolumeClaim", "Deployment"}


def test_kubernetes_dashboard_configmap_is_the_dashboard_for_the_sidecar(
        rendered: list[dict[str, Any]]) -> None:
    (cm,) = [d for d in rendered if d["kind"] == "ConfigMap"
             and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    (name, text), = cm["data"].items()
    assert name.endswith(".json")
    assert json.loads(text) == json.loads((ROOT / "grafana" / "dashboards" / "prime-tofu.json").read_text())


def test_kubernetes_base_files_pass_the_schemas_without_kustomize() -> None:
    kv = validator()
    version = kv.utils.latest_version()
    for name in ("deployment.yaml", "service.yaml", "pvc.yaml"):
        kv.validate(yaml.safe_load((K8S / "base" / name).read_text()), version, strict=True)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def test_kubernetes_deployment_is_hardened_and_wired(rendered: list[dict[str, Any]],
                                                     tmp_path: Path) -> None:
    dep = by_kind(rendered, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert ctr["resources"]["requests"] and ctr["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert ports["http"] == EXPORTER_PORT
    # Probes use the plain health port, so they work whatever --web.config.file requires
    # (tests/test_web_hardening.py runs them against TLS + basic auth + client certificates).
    health = next(a for a in ctr["args"] if a.startswith("--web.health-address="))
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[ctr[probe]["httpGet"]["port"]] == int(health.rpartition(":")[2])
    assert ctr["image"].startswith("registry.example.com/")  # the overlay's image transform applied

    # Every volume names an object the overlay renders; mounts cover config, secret, state, /tmp.
    names = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert ("ConfigMap", vols["config"]["configMap"]["name"]) in names
    assert ("Secret", vols["ssh"]["secret"]["secretName"]) in names
    assert ("PersistentVolumeClaim", vols["baseline"]["persistentVolumeClaim"]["claimName"]) in names
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    assert mounts["config"]["readOnly"] and mounts["ssh"]["readOnly"]
    storage = next(a.split("=", 1)[1] for a in ctr["args"] if a.startswith("--storage.path="))
    assert mounts["baseline"]["mountPath"] == storage
    assert mounts["tmp"]["mountPath"] == "/tmp"

    # The config the pod gets loads, with the Secret's files where the mounts put them.
    cm = next(d for d in rendered if d["kind"] == "ConfigMap"
              and d["metadata"]["name"].startswith("prime-tofu-exporter-config"))
    secret = next(d for d in rendered if d["kind"] == "Secret")
    etc, sec = tmp_path / "etc", tmp_path / "secrets"
    etc.mkdir()
    sec.mkdir()
    for key, text in cm["data"].items():
        (etc / key).write_text(text)
    for key, b64 in secret["data"].items():
        (sec / key).write_bytes(base64.b64decode(b64))
    config_arg = next(a.split("=", 1)[1] for a in ctr["args"] if a.startswith("--config.file="))
    assert config_arg == f"{mounts['config']['mountPath']}/config.yml"
    cfg = load_remapped(etc / "config.yml", {mounts["config"]["mountPath"]: etc,
                                             mounts["ssh"]["mountPath"]: sec}, tmp_path)
    assert cfg.stores and all(s.password for s in cfg.stores)


def test_kubernetes_service_and_servicemonitor_select_the_pod(rendered: list[dict[str, Any]]) -> None:
    dep, svc, sm = (by_kind(rendered, k) for k in ("Deployment", "Service", "ServiceMonitor"))
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"] == "monitoring"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.fixture(scope="module")
def rendered_sharded() -> list[dict[str, Any]]:
    cmd = kustomize_cmd()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl installed")
    r = run([*cmd, str(K8S / "overlays" / "sharded")])
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def test_kubernetes_sharded_overlay_passes_the_schemas(rendered_sharded: list[dict[str, Any]]) -> None:
    kv = validator()
    version = kv.utils.latest_version()
    for doc in rendered_sharded:
        if not doc["apiVersion"].startswith(CRD_GROUP):
            kv.validate(doc, version, strict=True)
    # The StatefulSet replaces the Deployment and its single PVC (a volume per replica instead).
    assert sorted(d["kind"] for d in rendered_sharded) == sorted(
        ["ConfigMap", "ConfigMap", "Secret", "Service", "StatefulSet", "ServiceMonitor",
         "PrometheusRule"])


def test_kubernetes_sharded_replicas_are_the_shards(rendered: list[dict[str, Any]],
                                                     rendered_sharded: list[dict[str, Any]]) -> None:
    """Each replica's ordinal is its shard, the shard count is the replica count, each has its
    own volume at --storage.path, and the Prometheus job scrapes every replica by name."""
    from exporter.cli.main import _parse
    from exporter.fleet.shard import Shard

    sts, svc = by_kind(rendered_sharded, "StatefulSet"), by_kind(rendered_sharded, "Service")
    pod = sts["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    replicas = sts["spec"]["replicas"]
    assert replicas >= 2
    env = {e["name"]: e for e in ctr["env"]}
    assert "--shard=$(SHARD)" in ctr["args"]
    assert env["SHARD"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    for ordinal in range(replicas):  # what each pod's args parse to, $(SHARD) expanded
        args = _parse([a.replace("$(SHARD)", str(ordinal)) for a in ctr["args"]])
        assert args.shard == Shard(ordinal, replicas)
    storage = next(a.split("=", 1)[1] for a in ctr["args"] if a.startswith("--storage.path="))
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == storage
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["name"] not in {v["name"] for v in pod["volumes"]}

    # Headless Service named by serviceName, selecting the pods: stable per-replica names.
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= \
        sts["spec"]["template"]["metadata"]["labels"].items()

    # The pod is the single Deployment's pod, but for the shard flags and the volume.
    dep_pod = by_kind(rendered, "Deployment")["spec"]["template"]["spec"]
    (dep_ctr,) = dep_pod["containers"]
    assert {k: v for k, v in ctr.items() if k not in ("args", "env")} == \
        {k: v for k, v in dep_ctr.items() if k != "args"}
    assert [a for a in ctr["args"] if not a.startswith(("--shard", "--total-shards"))] == \
        dep_ctr["args"]
    assert pod["securityContext"] == dep_pod["securityContext"]
    assert [v for v in dep_pod["volumes"] if v["name"] != claim["metadata"]["name"]] == \
        pod["volumes"]

    scrape = yaml.safe_load((K8S / "overlays" / "sharded" / "prometheus-scrape.yml").read_text())
    (job,) = scrape["scrape_configs"]
    (static,) = job["static_configs"]
    ns, name = sts["metadata"]["namespace"], svc["metadata"]["name"]
    assert static["targets"] == [f"{sts['metadata']['name']}-{i}.{name}.{ns}.svc:{EXPORTER_PORT}"
                                 for i in range(replicas)]
    assert job["job_name"] == "prime-tofu-exporter"


def rules_or_skip() -> dict[str, Any]:
    if not RULES.exists():
        pytest.skip(f"{RULES.relative_to(ROOT)} is not in the repository yet (owned by the alerting work)")
    data = yaml.safe_load(RULES.read_text())
    assert isinstance(data, dict)
    return data


def test_prometheusrule_is_generated_from_the_rule_file() -> None:
    rules = rules_or_skip()
    generated = yaml.safe_load(
        (K8S / "components" / "prometheus-operator" / "prometheusrule.yaml").read_text())
    assert generated["kind"] == "PrometheusRule"
    assert generated["spec"] == rules  # the same rules, group for group, annotation for annotation


def test_prometheusrule_in_the_overlay_passes_promtool(
        rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    rules = rules_or_skip()
    spec = by_kind(rendered, "PrometheusRule")["spec"]
    assert spec == rules
    out = tmp_path / "from-prometheusrule.yml"
    out.write_text(yaml.safe_dump(spec))
    r = run([need("promtool"), "check", "rules", str(out)])
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- systemd


def unit_for_verify(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at an executable that exists here (verify checks it)."""
    text = UNIT.read_text()
    binary = re.search(r"^ExecStart=(\S+)", text, re.M)
    assert binary
    out = tmp_path / UNIT.name
    out.write_text(text.replace(binary.group(1), sys.executable))
    return out


def test_systemd_unit_verifies_without_warnings(tmp_path: Path) -> None:
    tool = need("systemd-analyze")
    r = run([tool, "verify", str(unit_for_verify(tmp_path))])
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr  # unknown keys only warn


def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    tool = need("systemd-analyze")
    unit = unit_for_verify(tmp_path)
    r = run([tool, "security", "--offline=true", "--no-pager", str(unit)])
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert found, r.stdout[-500:] + r.stderr
    assert float(found.group(1)) <= 2.0, r.stdout  # systemd's scale: 0 safest, 10 unprotected
    text = UNIT.read_text()
    for directive in ("DynamicUser=yes", "StateDirectory=prime-tofu-exporter", "ProtectSystem=strict",
                      "NoNewPrivileges=yes", "LoadCredential=pi-password:"):
        assert re.search(rf"^{re.escape(directive)}", text, re.M), directive
    docs = re.findall(r"^Documentation=(\S+)$", text, re.M)
    assert docs and all(d.startswith(
        "https://github.com/prime-tofu-exporter/prime-tofu-exporter/blob/main/docs/") for d in docs)
    assert all((ROOT / d.split("/blob/main/")[1]).is_file() for d in docs), docs
    start = re.search(r"^ExecStart=(.*?)(?<!\\)$", text, re.M | re.S)
    assert start and "--storage.path=/var/lib/prime-tofu-exporter" in start.group(1)


def test_systemd_example_config_reads_the_password_from_the_credential(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "pi-password").write_text("from-credential\n")
    (tmp_path / "known_hosts").write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    credential = re.search(r"^LoadCredential=pi-password:(\S+)", UNIT.read_text(), re.M)
    assert credential and credential.group(1).startswith("/etc/prime-tofu-exporter/")
    cfg = load_remapped(DEPLOY / "systemd" / "config.yml", {"/etc/prime-tofu-exporter": tmp_path}, tmp_path)
    assert {s.password for s in cfg.stores} == {"from-credential"}
    assert "${CREDENTIALS_DIRECTORY}" in (DEPLOY / "systemd" / "config.yml").read_text()


def test_shipped_configs_take_the_password_from_a_file() -> None:
    for path in DEPLOY.rglob("config.yml"):
        data = yaml.safe_load(path.read_text())
        keys = {k for part in (data.get("defaults", {}), *data.get("stores", [])) for k in part}
        assert "password" not in keys and "password_file" in keys, path
