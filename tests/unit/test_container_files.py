"""The container files (Dockerfile, .dockerignore, compose.yaml) agree with the code they deploy.

No Docker daemon runs here, so these read the files: every ``OSTIARY_*`` name is a setting,
each service's environment is one that :meth:`Settings.from_env` accepts, the ports published
are the ones the server listens on, the health check asks a real route, the runtime stage runs
as a non-root user without compilers, and the secret files compose mounts are the ones
``deploy/compose/make-secrets`` makes. tests/e2e/test_image_install.py runs the image's install
steps themselves.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from server.app import _routes
from server.settings import Settings, SettingsError, Variable, parse_duration
from server.users.passwords import Passwords
from tests.helpers import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE = REPO_ROOT / "compose.yaml"
MAKE_SECRETS = REPO_ROOT / "deploy" / "compose" / "make-secrets"
SECRETS_DIR = "deploy/compose/secrets"

#: the port Mailpit takes SMTP on unless MP_SMTP_BIND_ADDR says otherwise
MAILPIT_SMTP_PORT = 1025
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|cmake|rustc|cargo|[a-z0-9.+-]+-dev)\b")
OSTIARY_NAME = re.compile(r"\bOSTIARY_[A-Z0-9_]+")


# The Dockerfile, read as Docker reads it: comments dropped, continuation lines joined.


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            words = shlex.split(args)
            if "=" not in words[0]:  # the old form: ENV NAME value
                values[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                name, _, value = word.partition("=")
                values[name] = value
        return values


def dockerfile_stages() -> list[Stage]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [word for word in args.split() if not word.startswith("--")]  # --platform=...
            has_name = len(words) == 3 and words[1].upper() == "AS"
            stages.append(Stage(words[0], words[2] if has_name else None))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def copy_sources(stage: Stage) -> list[tuple[list[str], str]]:
    """Each ``COPY`` from the build context in ``stage``: its sources and its destination."""
    copies = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        if any(word.startswith("--from") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        copies.append((words[:-1], words[-1]))
    return copies


def exec_form(args: str) -> list[str]:
    words = json.loads(args)
    assert isinstance(words, list) and all(isinstance(word, str) for word in words), args
    return words


def healthcheck_command(stage: Stage) -> list[str]:
    (args,) = stage.all("HEALTHCHECK")
    command = args[args.index("CMD ") + len("CMD ") :].strip()
    return exec_form(command)


# The settings and how a name is allowed.


def declared() -> dict[str, Variable]:
    variables = (f.metadata[Variable] for f in dataclasses.fields(Settings) if Variable in f.metadata)
    return {variable.name: variable for variable in variables}


def unknown_names(text: str) -> list[str]:
    """The ``OSTIARY_*`` names in ``text`` that are not settings (``_FILE`` only for secrets)."""
    variables = declared()
    unknown = []
    for name in sorted(set(OSTIARY_NAME.findall(text))):
        base = name.removesuffix("_FILE")
        if name in variables:
            continue
        if name.endswith("_FILE") and base in variables and variables[base].secret:
            continue
        unknown.append(name)
    return unknown


# compose.yaml, and each service's environment as the container would see it.


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def make_secrets(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(MAKE_SECRETS), str(target)], capture_output=True, text=True, timeout=30, check=False
    )


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def in_secrets(path: str, secrets: Path) -> Path:
    """A compose path under deploy/compose/secrets, in the directory make-secrets wrote to."""
    assert path.removeprefix("./").startswith(SECRETS_DIR + "/"), f"{path} is not under {SECRETS_DIR}/"
    return secrets / path.removeprefix("./").removeprefix(SECRETS_DIR + "/")


def service_environment(name: str, secrets: Path) -> dict[str, str]:
    """What the container's process sees: the image's ENV, then env_file, then environment,
    with each ``/run/secrets/<name>`` the service mounts pointing at make-secrets' file."""
    spec = compose()
    service = spec["services"][name]
    env = dockerfile_stages()[-1].env() if service.get("image", "").startswith("ostiary") else {}
    env_files = service.get("env_file", [])
    for path in [env_files] if isinstance(env_files, str) else env_files:
        env.update(read_env_file(in_secrets(path, secrets)))
    env.update({key: str(value) for key, value in (service.get("environment") or {}).items()})
    mounted = {f"/run/secrets/{s}": in_secrets(spec["secrets"][s]["file"], secrets) for s in service.get("secrets", [])}
    return {key: str(mounted.get(value, value)) for key, value in env.items()}


def settings_of(env: Mapping[str, str]) -> Settings:
    try:
        return Settings.from_env(env)
    except SettingsError as exc:
        pytest.fail(exc.render())


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("compose") / "secrets"
    result = make_secrets(target)
    assert result.returncode == 0, result.stderr
    return target


def published(service: Mapping[str, Any]) -> dict[int, int]:
    """Container port -> host port, from ``ports: ["[ip:]host:container"]``."""
    ports = {}
    for entry in service.get("ports", []):
        host, container = str(entry).rsplit(":", 2)[-2:]
        ports[int(container.split("/")[0])] = int(host)
    return ports


# The Dockerfile.


def test_every_ostiary_name_in_the_dockerfile_is_a_setting() -> None:
    assert unknown_names(DOCKERFILE.read_text(encoding="utf-8")) == []


def test_the_runtime_is_the_build_base_with_only_the_virtualenv() -> None:
    builder, runtime = dockerfile_stages()
    assert builder.base == runtime.base and "slim" in runtime.base
    assert copy_sources(runtime) == [], "the runtime stage copies nothing from the build context"
    (copied,) = runtime.all("COPY")
    assert shlex.split(copied) == [f"--from={builder.name}", "/opt/ostiary", "/opt/ostiary"]
    (install,) = [args for args in builder.all("RUN") if "deploy/image/install" in args]
    assert "deploy/image/install /opt/ostiary" in install


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    runtime = dockerfile_stages()[-1]
    user = runtime.all("USER")
    assert user, "the runtime stage sets no USER: it would run as root"
    uid = user[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user[-1]}: a numeric uid other than 0 (runAsNonRoot can check it)"


def test_the_runtime_installs_no_compiler() -> None:
    runtime = dockerfile_stages()[-1]
    for command in runtime.all("RUN"):
        if re.search(r"\b(apt-get|apt|apk|dnf|yum)\b.*\binstall\b", command):
            assert not COMPILERS.search(command.split("install", 1)[1]), command


def test_the_entrypoint_is_ostiary_serve_on_the_virtualenv_path() -> None:
    runtime = dockerfile_stages()[-1]
    assert exec_form(runtime.all("ENTRYPOINT")[-1]) == ["ostiary"]
    assert exec_form(runtime.all("CMD")[-1]) == ["serve"]
    assert runtime.env()["PATH"].split(":")[0] == "/opt/ostiary/bin"
    assert runtime.env()["OSTIARY_HOST"] == "0.0.0.0"  # a container listens on its interfaces


def test_exposed_ports_are_the_ones_the_server_listens_on() -> None:
    runtime = dockerfile_stages()[-1]
    env = runtime.env()
    in_use = {int(env.get("OSTIARY_PORT", Settings().port)), int(env["OSTIARY_METRICS_PORT"])}
    exposed = {int(port.split("/")[0]) for args in runtime.all("EXPOSE") for port in args.split()}
    assert exposed == in_use


def test_the_healthcheck_asks_livez_on_the_listen_port() -> None:
    command = healthcheck_command(dockerfile_stages()[-1])
    assert command[0] in ("python", "python3")  # slim images have no curl
    paths = re.findall(r"""['"](/[A-Za-z0-9_./-]*)['"]""", command[-1])
    assert paths == ["/livez"], "the liveness probe: it never touches the database"
    assert paths[0] in {getattr(route, "path", None) for route in _routes()}
    assert "OSTIARY_PORT" in command[-1]


def test_what_the_build_copies_exists_and_is_in_the_build_context() -> None:
    ignore = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    for sources, _ in copy_sources(dockerfile_stages()[0]):
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path in the repository"
            assert not dockerignored(source, ignore), f"COPY {source}: .dockerignore excludes it"


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".git/config", "ostiary.db", "keys/secret", f"{SECRETS_DIR}/keys_secret", "tests/conftest.py"],
)
def test_the_build_context_leaves_out_secrets_and_local_state(path: str) -> None:
    assert dockerignored(path, DOCKERIGNORE.read_text(encoding="utf-8").splitlines())


def dockerignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in (line.strip() for line in rules):
        if not rule or rule.startswith("#"):
            continue
        negate, pattern = rule.startswith("!"), rule.lstrip("!").strip("/")
        patterns = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        anywhere = pattern.startswith("**/")
        for candidate in candidates:
            names = [candidate, *([candidate.rsplit("/", 1)[-1]] if anywhere else [])]
            if any(fnmatch.fnmatchcase(name, p) for name in names for p in patterns):
                ignored = not negate
                break
    return ignored


# compose.yaml.


def test_every_ostiary_name_in_compose_and_its_secrets_is_a_setting(secrets: Path) -> None:
    text = COMPOSE.read_text(encoding="utf-8") + (secrets / "database.env").read_text(encoding="utf-8")
    assert unknown_names(text) == []


@pytest.mark.parametrize("service", ["migrate", "ostiary"])
def test_each_ostiary_service_starts_with_valid_settings(service: str, secrets: Path) -> None:
    settings = settings_of(service_environment(service, secrets))
    assert settings.shared_database  # PostgreSQL, never the embedded SQLite file


def test_the_migration_runs_db_upgrade_once_postgres_is_healthy() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert "entrypoint" not in migrate and exec_form(dockerfile_stages()[-1].all("ENTRYPOINT")[-1]) == ["ostiary"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"
    assert services["ostiary"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"


def test_the_database_url_is_the_postgres_service_and_its_password(secrets: Path) -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"].split(":")[0] == "postgres" and postgres["image"].split(":")[1].startswith("16")
    assert any(str(volume).endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    environment = service_environment("postgres", secrets)
    url = urlsplit(settings_of(service_environment("ostiary", secrets)).database_url)
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert url.username == environment["POSTGRES_USER"] and url.path == "/" + environment["POSTGRES_DB"]
    assert url.password == Path(environment["POSTGRES_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()


def test_published_ports_are_the_listen_and_metrics_ports_and_the_issuer_is_reachable(secrets: Path) -> None:
    env = service_environment("ostiary", secrets)
    settings = settings_of(env)
    ports = published(compose()["services"]["ostiary"])
    assert set(ports) == {settings.port, int(env["OSTIARY_METRICS_PORT"])}
    issuer = urlsplit(settings.issuer)
    assert issuer.hostname == "localhost" and issuer.port == ports[settings.port]


def test_docker_waits_out_the_shutdown_grace_before_killing_the_server(secrets: Path) -> None:
    settings = settings_of(service_environment("ostiary", secrets))
    stop_grace = compose()["services"]["ostiary"].get("stop_grace_period", "10s")  # Docker's default
    assert parse_duration(stop_grace) > settings.shutdown_grace_seconds


def test_mail_goes_to_the_mailpit_service(secrets: Path) -> None:
    services = compose()["services"]
    settings = settings_of(service_environment("ostiary", secrets))
    mailpit = services[settings.smtp_host or ""]
    assert mailpit["image"].split(":")[0] == "axllent/mailpit"
    bind = (mailpit.get("environment") or {}).get("MP_SMTP_BIND_ADDR", f"0.0.0.0:{MAILPIT_SMTP_PORT}")
    assert settings.smtp_port == int(bind.rsplit(":", 1)[1])
    assert settings.smtp_security == "none"  # Mailpit has no certificate here
    assert not settings.mail_to_log
    assert published(mailpit) == {8025: 8025}  # the web UI at http://localhost:8025


def test_the_first_administrator_is_bootstrapped_with_a_password_from_a_file(secrets: Path) -> None:
    env = service_environment("ostiary", secrets)
    settings = settings_of(env)
    assert "OSTIARY_ADMIN_PASSWORD" not in env and env["OSTIARY_ADMIN_PASSWORD_FILE"].startswith(str(secrets))
    assert settings.admin_email and settings.admin_password
    Passwords(settings).check_policy(settings.admin_password, username=settings.admin_email, email=settings.admin_email)
    assert settings.keys_secret is not None and "OSTIARY_KEYS_SECRET" not in env


def test_make_secrets_makes_every_file_compose_reads_and_never_replaces_one(secrets: Path) -> None:
    spec = compose()
    paths = [s["file"] for s in spec["secrets"].values()]
    for service in spec["services"].values():
        env_files = service.get("env_file", [])
        paths += [env_files] if isinstance(env_files, str) else env_files
    before = {path: in_secrets(path, secrets).read_text(encoding="utf-8") for path in paths}
    assert all(value.strip() for value in before.values())
    assert secrets.stat().st_mode & 0o077 == 0
    again = make_secrets(secrets)
    assert again.returncode == 0, again.stderr
    assert {path: in_secrets(path, secrets).read_text(encoding="utf-8") for path in paths} == before


def test_git_ignores_the_made_secrets() -> None:
    for name in ("keys_secret", "database.env"):
        result = subprocess.run(
            ["git", "check-ignore", "-q", f"{SECRETS_DIR}/{name}"], cwd=REPO_ROOT, timeout=30, check=False
        )
        assert result.returncode == 0, f"{SECRETS_DIR}/{name} is not ignored by git"
