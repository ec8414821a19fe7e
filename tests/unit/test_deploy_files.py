"""The deployment files in deploy/: every YAML parses, and the facts the docs rely on hold."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import ENV_ENCRYPTION_KEYS, ENV_HASH_KEY, ENV_SIGNING_KEYS, CookieConfig, parse_config
from sidecar.errors import ConfigError
from tests.conftest import sqlite_path
from tests.e2e.traefik_emulator import load_config, route

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TRAEFIK = DEPLOY / "traefik"
KUBERNETES = DEPLOY / "kubernetes"
IDENTITY = ["Remote-User", "Remote-Email", "Remote-Name", "Remote-Groups"]
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
SECRET_ENV = (ENV_SIGNING_KEYS, ENV_HASH_KEY, ENV_ENCRYPTION_KEYS)


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert load_all(path), f"{path} holds no YAML document"


def test_the_expected_files_exist() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in YAML_FILES}
    assert {"traefik/dynamic.yml", "traefik/traefik.yml", "kubernetes/sidecar.yaml",
            "kubernetes/ingress.yaml"} <= names


# -- Traefik --------------------------------------------------------------------------------
def test_traefik_forward_auth_middleware() -> None:
    http = yaml.safe_load((TRAEFIK / "dynamic.yml").read_text())["http"]
    fa = http["middlewares"]["totp-sidecar"]["forwardAuth"]
    assert fa["address"].endswith("/auth/forward")
    assert fa["trustForwardHeader"] is True
    assert fa["authResponseHeaders"] == IDENTITY
    assert fa["addAuthCookiesToResponse"] == [CookieConfig().name]
    assert "authRequestHeaders" not in fa  # the sidecar needs Cookie, Accept, Authorization, X-OTP
    assert "forwardBody" not in fa


def test_traefik_routers() -> None:
    http = yaml.safe_load((TRAEFIK / "dynamic.yml").read_text())["http"]
    app, pages = http["routers"]["app"], http["routers"]["totp-sidecar-pages"]
    assert app["middlewares"] == ["totp-sidecar"]
    assert "middlewares" not in pages, "the pages must not go through the forward-auth check"
    assert http["services"][pages["service"]]["loadBalancer"]["servers"][0]["url"] == \
        http["middlewares"]["totp-sidecar"]["forwardAuth"]["address"].rsplit("/auth/", 1)[0]
    config = load_config()

    def router(path: str) -> str | None:
        found = route(config, "app.example", path)
        return found.name if found else None

    for path in ("/_2fa", "/_2fa/", "/_2fa/challenge", "/_2fa/static/style.css"):
        assert router(path) == "totp-sidecar-pages", path
    for path in ("/", "/_2fax", "/api/data", "/healthz", "/x/_2fa/"):
        assert router(path) == "app", path


def test_traefik_static_config() -> None:
    static = yaml.safe_load((TRAEFIK / "traefik.yml").read_text())
    web = static["entryPoints"]["web"]
    assert web["address"] == ":8080"
    # trustForwardHeader is only safe when the entrypoint drops clients' X-Forwarded-*.
    assert not (web.get("forwardedHeaders") or {}).get("insecure")
    assert static["providers"]["file"]["filename"].endswith("/dynamic.yml")


# -- Kubernetes -----------------------------------------------------------------------------
def kube_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for name in ("sidecar.yaml", "ingress.yaml"):
        for doc in load_all(KUBERNETES / name):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def env_secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(48) for name in SECRET_ENV}


def sidecar_config_text() -> str:
    return str(kube_objects()[("ConfigMap", "totp-sidecar")]["data"]["config.yaml"])


def test_kubernetes_configmap_is_a_valid_config() -> None:
    config = parse_config(yaml.safe_load(sidecar_config_text()), environ=env_secrets())
    assert config.server.host == "0.0.0.0" and config.server.port == 9091
    assert config.primary.resolver == "introspect"
    assert sqlite_path(config).startswith("/var/lib/totp-sidecar/")
    # The controller pods are not on loopback: trusted_proxies must name their network.
    assert config.server.trusted_proxies
    assert not any(net.is_loopback for net in config.server.trusted_proxies)


def test_kubernetes_secret_placeholders_are_refused() -> None:
    secret = kube_objects()[("Secret", "totp-sidecar-secrets")]
    assert set(secret["stringData"]) == set(SECRET_ENV)
    with pytest.raises(ConfigError):
        parse_config(yaml.safe_load(sidecar_config_text()), environ=dict(secret["stringData"]))


def test_kubernetes_deployment() -> None:
    objects = kube_objects()
    deployment = objects[("Deployment", "totp-sidecar")]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["totp-sidecar", "serve", "--config",
                                    "/etc/totp-sidecar/config.yaml"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == 9091
    assert container["envFrom"] == [{"secretRef": {"name": "totp-sidecar-secrets"}}]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == "/etc/totp-sidecar"
    assert volumes["config"]["configMap"]["name"] == "totp-sidecar"
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "totp-sidecar-data"
    assert ("PersistentVolumeClaim", "totp-sidecar-data") in objects
    config = parse_config(yaml.safe_load(sidecar_config_text()), environ=env_secrets())
    assert sqlite_path(config).startswith(mounts["data"] + "/")
    service = objects[("Service", "totp-sidecar")]["spec"]
    assert service["ports"][0]["port"] == 9091
    assert service["selector"] == deployment["selector"]["matchLabels"]


def test_kubernetes_ingresses() -> None:
    objects = kube_objects()
    app, pages = objects[("Ingress", "myapp")], objects[("Ingress", "myapp-totp-sidecar")]
    namespace = objects[("Service", "totp-sidecar")]["metadata"]["namespace"]
    notes = app["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "auth-url"] == \
        f"http://totp-sidecar.{namespace}.svc.cluster.local:9091/auth/nginx"
    assert [h.strip() for h in notes[prefix + "auth-response-headers"].split(",")] == IDENTITY
    assert notes[prefix + "auth-signin"] == "https://$host/_2fa/challenge"
    assert not any("snippet" in k or "auth-cache" in k for k in notes)
    # The pages: same host, /_2fa to the sidecar's Service, no auth annotations at all.
    assert not any(k.startswith(prefix + "auth-") for k in pages["metadata"].get("annotations", {}))
    assert app["spec"]["rules"][0]["host"] == pages["spec"]["rules"][0]["host"]
    assert app["metadata"]["namespace"] == pages["metadata"]["namespace"] == namespace
    (path,) = pages["spec"]["rules"][0]["http"]["paths"]
    config = parse_config(yaml.safe_load(sidecar_config_text()), environ=env_secrets())
    assert (path["path"], path["pathType"]) == (config.prefix, "Prefix")
    assert path["backend"]["service"] == {"name": "totp-sidecar", "port": {"number": 9091}}
