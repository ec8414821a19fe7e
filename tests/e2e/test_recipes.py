"""The recipes of docs/recipes/, proven on real applications installed from PyPI.

Each test runs one application unchanged, with its own login, behind ``deploy/nginx`` as
shipped and the sidecar configured by the blocks of its recipe file (read from the file; only
the port 8000 of the ``app`` upstream is replaced by a free one). A browser-like client signs
in with the app's own form, enrolls, signs out and in, is challenged, passes; then the API
calls the app allows. Without the application's package the test is skipped, and fails under
``CI=true`` (the packages are in the test extras).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import yaml

from tests.e2e.stacks import (
    NGINX,
    NGINX_DEPLOY,
    ROOT,
    Launch,
    RealApp,
    Stack,
    launch_nginx,
    require_module,
    running,
    running_real_app,
)
from tests.e2e.steps import API, BROWSER, assert_challenged, assert_json_error, enroll, hidden

RECIPES = ROOT / "docs" / "recipes"
APP_PORT = "127.0.0.1:8000"  # the app upstream of deploy/nginx, as the recipes write it


def recipe_block(recipe: str, name: str, path: Path | None = None) -> str:
    """The fenced block after ``<!-- recipe:NAME -->`` in docs/recipes/RECIPE (or ``path``)."""
    text = (path or RECIPES / recipe).read_text()
    match = re.search(rf"<!-- recipe:{re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", text, re.S)
    assert match, f"{recipe}: no block {name!r}"
    return match.group(1) + "\n"


def sidecar_recipe(recipe: str) -> Callable[[int], dict[str, Any]]:
    """The recipe's sidecar config, for the app on ``port``."""
    block = recipe_block(recipe, "sidecar.yaml")
    assert APP_PORT in block

    def for_port(port: int) -> dict[str, Any]:
        loaded = yaml.safe_load(block.replace(APP_PORT, f"127.0.0.1:{port}"))
        assert isinstance(loaded, dict)
        return loaded

    return for_port


def pass_challenge(stack: Stack, client: httpx.Client, key: str, path: str) -> None:
    """Challenged on ``path``; a fresh code sends the browser back to it."""
    location = assert_challenged(stack, client, path)
    r = client.get(location)
    assert r.status_code == 200, r.text
    code = pyotp.TOTP(key).at(time.time() + 30)  # a step not used at enrollment
    r = client.post("/_2fa/challenge", data={"csrf": hidden(r.text, "csrf"),
                                             "rd": hidden(r.text, "rd"), "code": code})
    assert r.status_code in (302, 303), r.text
    assert r.headers["location"] == f"{stack.base}{path}"


def sidecar_logout(client: httpx.Client) -> None:
    """The sidecar's sign-out: its 2FA cookie ends."""
    r = client.get("/_2fa/logout")
    assert r.status_code == 200, r.text
    r = client.post("/_2fa/logout", data={"csrf": hidden(r.text, "csrf"), "rd": "/"})
    assert r.status_code in (302, 303), r.text
    assert client.cookies.get("totp_sidecar") is None


@pytest.fixture()
def nginx(nginx_bin: str) -> str:
    return nginx_bin


# -- Datasette + datasette-auth-passwords ---------------------------------------------------
def datasette_app(tmp: Path, password: str) -> RealApp:
    from datasette_auth_passwords.utils import hash_password

    metadata = tmp / "metadata.json"
    metadata.write_text(recipe_block("datasette.md", "metadata.json"))
    json.loads(metadata.read_text())
    return RealApp(
        "datasette",
        lambda port, _tmp: [sys.executable, "-m", "datasette", "serve", "--memory",
                            "-m", str(metadata), "-h", "127.0.0.1", "-p", str(port)],
        "/-/versions.json", env={"DATASETTE_ALICE_PASSWORD_HASH": hash_password(password)})


def datasette_login(client: httpx.Client, password: str) -> None:
    r = client.get("/-/login")
    assert r.status_code == 200, r.text
    csrf = re.search(r'name="csrftoken" value="([^"]+)"', r.text)
    assert csrf, "no CSRF token on Datasette's login form"
    r = client.post("/-/login", data={"username": "alice", "password": password,
                                      "csrftoken": csrf.group(1)})
    assert r.status_code == 302, r.text
    assert client.cookies.get("ds_actor"), "Datasette set no session cookie"


def datasette_logout(client: httpx.Client) -> None:
    r = client.get("/-/logout")
    assert r.status_code == 200, r.text
    csrf = re.search(r'name="csrftoken" value="([^"]+)"', r.text)
    assert csrf, "no CSRF token on Datasette's logout form"
    r = client.post("/-/logout", data={"csrftoken": csrf.group(1)})
    assert r.status_code == 302, r.text
    assert client.cookies.get("ds_actor") is None


def test_datasette(nginx: str, tmp_path: Path) -> None:
    require_module("datasette_auth_passwords", "datasette datasette-auth-passwords")
    password = secrets.token_urlsafe(12)
    app = datasette_app(tmp_path, password)
    with running_real_app(NGINX, nginx, tmp_path, app, sidecar_recipe("datasette.md")) as stack, \
            httpx.Client(base_url=stack.base, headers=BROWSER, follow_redirects=False,
                         timeout=10.0) as browser:
        # Anonymous: Datasette answers {"actor": null}, the sidecar lets the app decide.
        r = browser.get("/-/actor.json")
        assert r.status_code == 200 and r.json() == {"actor": None}

        datasette_login(browser, password)
        assert browser.get("/-/actor.json").json() == {"actor": {"id": "alice"}}
        key, _, _ = enroll(browser)
        assert browser.get("/-/actor.json").json() == {"actor": {"id": "alice"}}

        # Datasette signs the same ds_actor at every login (no nonce, no expiry): out and in
        # with its forms alone, this browser's 2FA cookie still fits (docs/recipes caveat).
        datasette_logout(browser)
        datasette_login(browser, password)
        assert browser.get("/-/databases.json", headers=API).status_code == 200
        # Out of both (the sidecar's /_2fa/logout, then Datasette's) and in: challenged.
        sidecar_logout(browser)
        datasette_logout(browser)
        datasette_login(browser, password)
        r = browser.get("/-/databases.json", headers=API)  # the API with the session cookie
        assert_json_error(r, 401, "2fa_required")
        pass_challenge(stack, browser, key, "/-/actor.json")
        assert browser.get("/-/actor.json").json() == {"actor": {"id": "alice"}}

        # Datasette's JSON API with the session cookie (and this session's 2FA cookie).
        r = browser.get("/-/databases.json", headers=API)
        assert r.status_code == 200, r.text
        assert [db["name"] for db in r.json()] == ["_memory"]
        r = browser.get("/_memory.json", params={"sql": "select 6 * 7 as answer"}, headers=API)
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [[42]]
        # The session cookie alone, without the 2FA cookie: refused.
        ds_actor = browser.cookies.get("ds_actor")
        assert ds_actor
        with httpx.Client(base_url=stack.base, headers=API, cookies={"ds_actor": ds_actor},
                          timeout=10.0) as script:
            assert_json_error(script.get("/-/databases.json"), 401, "2fa_required")


# -- Jupyter Server with a password ---------------------------------------------------------
def jupyter_app(tmp: Path, password: str, token: str) -> RealApp:
    from jupyter_server.auth.security import passwd

    config = tmp / "jupyter_server_config.py"
    config.write_text(recipe_block("jupyter-server.md", "jupyter_server_config.py"))
    home = tmp / "jupyter-home"
    (home / "root").mkdir(parents=True)
    hashed: str = passwd(password)  # type: ignore[no-untyped-call]
    env = {"JUPYTER_PASSWORD_HASH": hashed, "JUPYTER_TOKEN": token,
           "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    return RealApp(
        "jupyter",
        lambda port, _tmp: [sys.executable, "-m", "jupyter_server",
                            "--config", str(config), "--ip", "127.0.0.1", "--port", str(port),
                            "--port-retries", "0", "--no-browser",
                            f"--ServerApp.root_dir={home / 'root'}",
                            *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI containers
        "/api", env=env)


def jupyter_login(client: httpx.Client, password: str) -> None:
    r = client.get("/login")
    assert r.status_code == 200, r.text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', r.text)
    assert xsrf, "no _xsrf field on Jupyter's login form"
    r = client.post("/login?next=%2Fapi%2Fme", data={"password": password,
                                                     "_xsrf": html.unescape(xsrf.group(1))})
    assert r.status_code == 302, r.text
    assert client.cookies.get("jupyter-login"), "Jupyter set no login cookie"


def jupyter_user(client: httpx.Client) -> str:
    r = client.get("/api/me", headers=API)
    assert r.status_code == 200, r.text
    return str(r.json()["identity"]["username"])


def test_jupyter_server(nginx: str, tmp_path: Path) -> None:
    require_module("jupyter_server", "jupyter-server")
    password, token = secrets.token_urlsafe(12), secrets.token_urlsafe(24)
    app = jupyter_app(tmp_path, password, token)
    with running_real_app(NGINX, nginx, tmp_path, app, sidecar_recipe("jupyter-server.md")) as stack, \
            httpx.Client(base_url=stack.base, headers=BROWSER, follow_redirects=False,
                         timeout=10.0) as browser:
        assert browser.get("/api/me", headers=API).status_code == 403  # anonymous: Jupyter's 403

        jupyter_login(browser, password)
        assert jupyter_user(browser) == "owner"
        key, _, _ = enroll(browser)

        # Out and in with Jupyter's own pages: a new session is challenged, then passes.
        r = browser.get("/logout")
        assert r.status_code == 200, r.text
        assert browser.cookies.get("jupyter-login") is None
        # Jupyter's cookie is the signed user and the time in seconds: a login within the
        # same second would give the very same cookie (and this browser's 2FA cookie fits it).
        time.sleep(1.05)
        jupyter_login(browser, password)
        assert_json_error(browser.get("/api/status", headers=API), 401, "2fa_required")
        pass_challenge(stack, browser, key, "/api/status")
        r = browser.get("/api/status", headers=API)
        assert r.status_code == 200, r.text
        assert r.json()["kernels"] == 0
        assert jupyter_user(browser) == "owner"

        # Scripts with the token: Bearer passes (api.bearer: pass), Jupyter still checks it;
        # the "token" scheme is not one the sidecar knows: like a session, it needs 2FA.
        with httpx.Client(base_url=stack.base, headers=API, timeout=10.0) as script:
            r = script.get("/api/status", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            # Jupyter set its login cookie on that answer: sent back, the request is a
            # browser session's again, which needs that session's 2FA cookie.
            assert script.cookies.get("jupyter-login")
            r = script.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert_json_error(r, 401, "2fa_required")
            script.cookies.clear()
            r = script.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert r.json()["identity"]["username"] == "owner"
            script.cookies.clear()
            r = script.get("/api/status", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 403  # Jupyter's answer: the sidecar sees nobody
            r = script.get("/api/status", headers={"Authorization": f"token {token}"})
            assert_json_error(r, 401, "2fa_required")
            # A token in the URL is neither a cookie nor Authorization: the sidecar sees nobody
            # and Jupyter checks the token (the recipe says how to refuse it in nginx).
            r = script.get("/api/status", params={"token": token})
            assert r.status_code == 200, r.text
            script.cookies.clear()
            assert script.get("/api/status", params={"token": "wrong"}).status_code == 403


# -- every recipe's config, run or not, is one the sidecar accepts --------------------------
@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.md") if p.name != "README.md"))
def test_recipe_config_loads(recipe: str, tmp_path: Path) -> None:
    from sidecar.config.load import load_config
    from tests.e2e.stacks import recipe_sidecar_config

    block = yaml.safe_load(recipe_block(recipe, "sidecar.yaml"))
    path = tmp_path / "sidecar.yaml"
    recipe_sidecar_config(path, 9091, tmp_path / "sidecar.db", block)
    config = load_config(path, environ={})
    assert config.primary.introspect.user_key == block["primary"]["introspect"]["user_key"]
    assert config.primary.session_cookies == tuple(block["primary"]["session_cookies"])
    assert config.rules, "a recipe names the paths to bypass"
    assert recipe in (RECIPES / "README.md").read_text(), "list the recipe in docs/recipes/README.md"


# -- README "Put it in front of your app": the page shown when the sidecar is down ----------
def test_readme_sidecar_down_page(nginx: str, tmp_path: Path) -> None:
    """README's error_page snippet, added to deploy/nginx's server block: with the sidecar
    down, protected paths answer its 503 page; unprotected ones still reach the app."""
    readme = ROOT / "README.md"
    in_location = recipe_block(readme.name, "sidecar-down-location.nginx", readme)
    in_server = recipe_block(readme.name, "sidecar-down-server.nginx", readme)

    def launch(binary: str, tmp: Path, stack: Stack) -> Launch:
        started = launch_nginx(binary, tmp, stack)
        server_file = started.conf_dir / "totp-sidecar.conf"
        server, n = re.subn(r"(?m)^(\s*include snippets/totp-sidecar-protect\.conf;.*)$",
                            lambda m: f"{m.group(1)}\n{in_location}", server_file.read_text())
        assert n == 1
        end = server.rstrip().rindex("}")
        server_file.write_text(f"{server[:end]}{in_server}}}\n")
        return started

    spec = dataclasses.replace(NGINX, launch=launch)
    with running(spec, nginx, tmp_path, with_sidecar=False) as stack:
        for accept in (BROWSER, API):
            r = httpx.get(f"{stack.base}/", headers=accept, timeout=10.0)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("text/html")
            assert "<title>Sign-in check unavailable</title>" in r.text
            assert r.headers["retry-after"] == "30"
            assert "no-store" in r.headers["cache-control"]
        assert httpx.get(f"{stack.base}/healthz", timeout=10.0).status_code == 200


# -- README "Proxies": the nginx server block, with the files where deploy/nginx installs them --
def test_readme_nginx_block_is_a_valid_config(nginx: str, tmp_path: Path) -> None:
    """The README's nginx example passes ``nginx -t`` in the Debian layout deploy/nginx/README
    installs (http-level files in conf.d/, the snippets in snippets/): nothing it needs, such
    as the ``$totp_host`` map, is left out."""
    readme = ROOT / "README.md"
    block = recipe_block(readme.name, "proxies-nginx.conf", readme)
    (tmp_path / "conf.d").mkdir()
    for name in ("totp-sidecar-http.conf", "totp-sidecar-upstreams.conf"):
        shutil.copy(NGINX_DEPLOY / name, tmp_path / "conf.d" / name)
    shutil.copytree(NGINX_DEPLOY / "snippets", tmp_path / "snippets")
    server = block.replace("listen 443 ssl;", "listen 127.0.0.1:8443;")  # no certificate here
    assert server != block
    (tmp_path / "nginx.conf").write_text(
        f"error_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{\n    include conf.d/*.conf;\n{server}}}\n")
    result = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
