"""Several apps behind one sidecar, end to end: two demo apps (``demo_session`` and
``blog_session``) on two host names through ONE real nginx and ONE sidecar process.

nginx runs the README's two server blocks (``<!-- recipe:apps-nginx.conf -->``) with
deploy/nginx's snippets, and the sidecar the README's ``apps:`` config
(``<!-- recipe:apps-sidecar.yaml -->``), ports replaced by free ones. Run twice: the blog in
its own users namespace (alice's wiki 2FA is not the blog's), and sharing the wiki's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pyotp
import pytest
import yaml

from tests.e2e.stacks import (
    NGINX,
    NGINX_DEPLOY,
    ROOT,
    Stack,
    deep_merge,
    new_stack,
    proxy_binary,
    start,
    stop,
    wait_ready,
)
from tests.e2e.steps import BROWSER, enroll, hidden, login, remote_users
from tests.ports import free_port

README = ROOT / "README.md"
WIKI, BLOG = "wiki.example.com", "blog.example.com"


def readme_block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- recipe:{re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", text, re.S)
    assert match, f"README.md: no block {name!r}"
    return match.group(1) + "\n"


def ports(text: str, wiki: int, blog: int) -> str:
    """The README's example ports (wiki 8001, blog 8002) replaced by the test's."""
    text, found = re.subn(r"127\.0\.0\.1:8001\b", f"127.0.0.1:{wiki}", text)
    text, more = re.subn(r"127\.0\.0\.1:8002\b", f"127.0.0.1:{blog}", text)
    assert found and more, "the README's example lost its ports 8001/8002"
    return text


def nginx_prefix(conf_dir: Path, stack: Stack, blog_port: int) -> None:
    """deploy/nginx's nginx.conf, http map and snippets; the sidecar's upstream on its port;
    the README's two server blocks as the server file."""
    conf_dir.mkdir(parents=True)
    for name in ("nginx.conf", "totp-sidecar-http.conf"):
        shutil.copy(NGINX_DEPLOY / name, conf_dir / name)
    (conf_dir / "snippets").symlink_to(NGINX_DEPLOY / "snippets", target_is_directory=True)
    upstreams = (NGINX_DEPLOY / "totp-sidecar-upstreams.conf").read_text()
    upstreams = upstreams.replace("server 127.0.0.1:9091;", f"server 127.0.0.1:{stack.sidecar_port};")
    (conf_dir / "totp-sidecar-upstreams.conf").write_text(upstreams)
    servers = ports(readme_block("apps-nginx.conf"), stack.app_port, blog_port)
    servers, listens = re.subn(r"(?m)^(\s*)listen 8080;", rf"\g<1>listen 127.0.0.1:{stack.port};",
                               servers)
    assert listens == 2, "the README's nginx example: expected two `listen 8080;` lines"
    (conf_dir / "totp-sidecar.conf").write_text(servers)


def sidecar_config(path: Path, stack: Stack, blog_port: int, db: Path, shared: bool) -> None:
    config: dict[str, Any] = yaml.safe_load(ports(readme_block("apps-sidecar.yaml"),
                                                  stack.app_port, blog_port))
    if shared:
        config["apps"][0]["users_namespace"] = "default"
    deep_merge(config, {
        "server": {"host": "127.0.0.1", "port": stack.sidecar_port, "log_level": "warning"},
        "secrets": {"signing_keys": ["k" * 48], "hash_key": "h" * 48, "encryption_keys": ["e" * 48]},
        "storage": {"sqlite": {"path": str(db)}}})
    path.write_text(yaml.safe_dump(config))


@contextlib.contextmanager
def two_apps(tmp: Path, shared: bool) -> Iterator[Stack]:
    binary = proxy_binary(NGINX)
    stack = new_stack(tmp)
    blog_port = free_port()
    sidecar_config(stack.config_path, stack, blog_port, tmp / "sidecar.db", shared)
    conf_dir = tmp / "nginx"
    nginx_prefix(conf_dir, stack, blog_port)
    stack.conf_dir = conf_dir
    demo = [sys.executable, "-m", "uvicorn", "--factory", "sidecar.demo.app:create_demo_app",
            "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log", "--port"]
    nginx = [binary, "-p", f"{conf_dir}/", "-c", str(conf_dir / "nginx.conf"),
             "-e", str(conf_dir / "error.log")]
    try:
        start(stack, "wiki", [*demo, str(stack.app_port)], tmp)
        start(stack, "blog", [*demo, str(blog_port)], tmp,
              env={**os.environ, "DEMO_SESSION_COOKIE": "blog_session"})
        start(stack, "sidecar", [sys.executable, "-m", "sidecar", "serve",
                                 "--config", str(stack.config_path)], tmp)
        start(stack, "nginx", nginx, tmp)
        stack.logs["nginx-error"] = conf_dir / "error.log"
        wait_ready(stack, "wiki", f"http://127.0.0.1:{stack.app_port}/healthz")
        wait_ready(stack, "blog", f"http://127.0.0.1:{blog_port}/healthz")
        wait_ready(stack, "sidecar", f"{stack.sidecar}/healthz")
        wait_ready(stack, "nginx", f"{stack.base}/_2fa/static/app.js", any_status=True)
        yield stack
    finally:
        for name in ("nginx", "sidecar", "blog", "wiki"):
            if name in stack.procs:
                stop(stack.procs[name])


def browser(stack: Stack, host: str) -> httpx.Client:
    """A browser on ``host`` (its own cookies, as a browser keeps them per site)."""
    return httpx.Client(base_url=stack.base, follow_redirects=False, timeout=10.0,
                        headers={**BROWSER, "Host": f"{host}:{stack.port}"})


def blog_login(client: httpx.Client, user: str) -> None:
    r = client.post("/login", data={"username": user, "password": f"{user}-password", "next": "/"})
    assert r.status_code == 303, r.text
    assert client.cookies.get("blog_session") and not client.cookies.get("demo_session")


def challenged_at(stack: Stack, client: httpx.Client, host: str) -> str:
    """The app's answer to ``/`` is the proxy's 302 to this host's challenge page."""
    r = client.get("/")
    assert r.status_code == 302, f"expected the challenge redirect, got {r.status_code}"
    parts = urlsplit(r.headers["location"])
    assert (parts.netloc, parts.path) == (f"{host}:{stack.port}", "/_2fa/challenge")
    return f"{parts.path}?{parts.query}"


def allowed(client: httpx.Client, user: str) -> None:
    r = client.get("/")
    assert r.status_code == 200, f"expected the app, got {r.status_code}"
    assert remote_users(r.text) == [user]


def pass_challenge(client: httpx.Client, url: str, key: str) -> httpx.Response:
    page = client.get(url)
    assert page.status_code == 200, page.text
    code = pyotp.TOTP(key).at(time.time() + 30)  # the next step: enrollment used this one
    return client.post("/_2fa/challenge", data={"csrf": hidden(page.text, "csrf"), "code": code,
                                                "rd": hidden(page.text, "rd")})


@pytest.mark.parametrize("shared", [False, True], ids=["own-namespace", "shared-namespace"])
def test_two_apps_through_one_nginx_and_one_sidecar(tmp_path: Path, shared: bool) -> None:
    with two_apps(tmp_path, shared) as stack, browser(stack, WIKI) as wiki, \
            browser(stack, BLOG) as blog:
        # the wiki: alice turns 2FA on; a new login there is asked for a code
        login(wiki, "alice")
        assert "Example Wiki" in wiki.get("/_2fa/enroll").text
        key, _, _ = enroll(wiki)
        wiki.post("/logout")
        login(wiki, "alice")
        challenged_at(stack, wiki, WIKI)
        # the blog, another demo app with its own session cookie, on its own host
        blog_login(blog, "alice")
        page = blog.get("/_2fa/settings" if not shared else "/_2fa/challenge?rd=/")
        assert "Example Blog" in page.text and "Example Wiki" not in page.text
        if not shared:  # the blog's users: alice has no 2FA there until she enrolls there
            allowed(blog, "alice")
            _, _, _ = enroll(blog)
            blog.post("/logout")
            blog_login(blog, "alice")
            url = challenged_at(stack, blog, BLOG)
            assert "Example Blog" in blog.get(url).text
            wrong = pass_challenge(blog, url, key)  # the wiki's secret is not the blog's
            assert wrong.status_code == 400
        else:  # one namespace: the wiki's 2FA holds on the blog too
            url = challenged_at(stack, blog, BLOG)
            passed = pass_challenge(blog, url, key)
            assert passed.status_code == 303
            assert passed.headers["location"] == f"http://{BLOG}:{stack.port}/"
            allowed(blog, "alice")
        # rd never crosses from one app's host to the other's
        rd = quote(f"http://{WIKI}:{stack.port}/", safe="")
        form = blog.get(f"/_2fa/challenge?rd={rd}")
        assert form.status_code in (200, 303)
        if form.status_code == 200:
            assert hidden(form.text, "rd") == "/"
        else:
            assert form.headers["location"] == "/"
        # a host neither app claims reaches no app: nginx's default server asks the sidecar,
        # which refuses the host (400), and nginx answers 500
        with browser(stack, "other.example.com") as stranger:
            assert stranger.get("/").status_code == 500
            assert stranger.get("/_2fa/settings").status_code == 404
        # the command line takes the app
        listed = subprocess.run(
            [sys.executable, "-m", "sidecar", "users", "--config", str(stack.config_path),
             "--app", "blog", "list"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("alice: 2FA on"), listed.stdout
        assert "\x1f" not in listed.stdout
