"""Authentication of the web UI and the API, against a real server with a users file: the users
file's errors, login and logout and their cookies, redirects, throttling (with an injected clock),
roles, CSRF on every state-changing route (enumerated from the app, so a new route without
protection fails here), the trusted proxy's user header, HTTP Basic, the security headers, the admin
endpoints, and signing in through the form in real Chromium under the Content-Security-Policy.

Passwords are hashed with argon2's and bcrypt's cheapest settings so that the many failed logins
stay fast; the server checks them exactly as it checks costly ones.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
import bcrypt
import httpx
import pytest
from conftest import ROOT, InProcess, in_process, screenshot
from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter

from collector.auth import token_entry
from sloscope import cli
from sloscope import settings as settings_mod
from sloscope.app import SloscopeServer
from ui import auth as auth_mod
from ui.api import create_app
from ui.auth import AuthConfig, Authenticator, safe_next
from ui.identity import CSRF_COOKIE
from ui.security_headers import CONTENT_SECURITY_POLICY
from ui.sessions import SESSION_COOKIE, SessionSigner
from ui.throttle import LoginThrottle
from ui.users import User, parse_users, verify_password

FAST_ARGON2 = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "carol": "carol-secret-333"}
SECRET = "a-session-secret-of-forty-characters-xx"
HTML = {"Accept": "text/html"}
SCRIPT = {"X-Requested-By": "test"}
TOKEN = "t" * 43  # a CSRF token a test client sets as its own cookie (double submit: any valid token)


def _users_yaml() -> str:
    alice = FAST_ARGON2.hash(PASSWORDS["alice"])
    bob = bcrypt.hashpw(PASSWORDS["bob"].encode(), bcrypt.gensalt(4)).decode()
    carol = FAST_ARGON2.hash(PASSWORDS["carol"])
    return f"""users:
  - name: alice
    password_hash: "{alice}"
    role: admin
  - name: bob
    password_hash: "{bob}"
    role: responder
  - name: carol
    password_hash: "{carol}"
    role: viewer
  - name: erin   # signs in only through the trusted proxy
    role: responder
"""


def run_async(coroutine: Any) -> Any:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps a loop running in the
    main thread once a browser test has run in the session."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class World:
    server: InProcess
    root: Path
    ingest_token: str

    @property
    def api(self) -> str:
        return self.server.api

    @property
    def auth(self) -> Authenticator:
        assert self.server.server.ui_auth is not None
        return self.server.server.ui_auth

    def client(self, source: str = "127.0.0.1", **kwargs: Any) -> httpx.Client:
        """A client whose connections come from ``source`` (any 127.x address reaches the server)."""
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.api, transport=transport, timeout=15, **kwargs)

    @contextlib.contextmanager
    def login(self, name: str, source: str = "127.0.0.1") -> Iterator[httpx.Client]:
        """A client signed in through the login form, as a browser does."""
        with self.client(source) as client:
            yield self._sign_in(client, name)

    def _sign_in(self, client: httpx.Client, name: str) -> httpx.Client:
        form = client.get("/login", headers=HTML)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        response = client.post(
            "/login",
            data={
                "username": name,
                "password": PASSWORDS[name],
                "csrf_token": token.group(1),
                "next": "/slos",
            },
        )
        assert response.status_code == 303, response.text
        return client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("web-auth")
    (root / "users.yaml").write_text(_users_yaml())
    shutil.copy(ROOT / "examples/demo/slos.yaml", root / "slos.yaml")
    ingest = token_entry("shop-prod", tenant="acme")
    (root / "tokens.yaml").write_text("tokens:\n" + ingest.yaml)
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setattr(SloscopeServer, "_start_scheduler", lambda self: None)  # no background evaluations
        server = stack.enter_context(
            in_process(
                root / "data",
                users_file=str(root / "users.yaml"),
                session_secret=SECRET,
                auth_proxy_header="X-Forwarded-User",
                auth_proxy_trusted=("127.0.0.2/32",),
                trusted_proxies=("127.0.0.4/32",),
                slos=str(root / "slos.yaml"),
                ingest_tokens_file=str(root / "tokens.yaml"),
            )
        )
        yield World(server, root, ingest.token)


def basic(name: str, password: str | None = None) -> dict[str, str]:
    raw = f"{name}:{PASSWORDS[name] if password is None else password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the raw header, attributes and all)."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


# -- the users file and the CLI ------------------------------------------------------------------


def test_users_file_problems_are_reported_as_file_line_field_problem() -> None:
    text = """users:
  - name: alice
    password_hash: hunter2
    role: admin
  - name: bob
    role: responer
  - name: carol
    rol: viewer
  - name: alice
    role: viewer
  - name: dave
    role: viewer
    tenant:
  - name: "bad name"
    role: viewer
    tenant: "no spaces"
"""
    users, errors = parse_users(text, "users.yaml")
    assert users == {}
    shown = [str(e) for e in errors]
    assert any(s.startswith("users.yaml:3: users[0].password_hash: must be an argon2") for s in shown), shown
    assert "users.yaml:6: users[1].role: unknown role 'responer' (did you mean 'responder'?)" in shown
    assert any(
        s.startswith("users.yaml:8: users[2].rol: unknown key 'rol' (did you mean 'role'?)") for s in shown
    )
    assert any(s.startswith("users.yaml:9: users[3].name: duplicate user 'alice'") for s in shown), shown
    assert any(s.startswith("users.yaml:13: users[4].tenant: must not be empty") for s in shown), shown
    assert any(
        s.startswith("users.yaml:14: users[5].name: 'bad name' is not a valid user name") for s in shown
    )
    assert any(s.startswith("users.yaml:16: users[5].tenant:") for s in shown), shown

    good, none = parse_users(_users_yaml(), "users.yaml")
    assert none == []
    assert good["erin"] == User("erin", "responder", None, "")
    assert verify_password(good["bob"].password_hash, PASSWORDS["bob"])  # bcrypt
    assert not verify_password(good["alice"].password_hash, PASSWORDS["bob"])  # argon2


def test_user_hash_prints_an_argon2id_hash_and_user_check_lists_the_users(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()  # the server's start-up banner
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert cli.main(["user", "hash"]) == 0
    # The last line: a server starting in another thread may print its banner meanwhile.
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith("$argon2id$") and verify_password(printed, "correct horse")
    assert not verify_password(printed, "correct horse\n")

    assert cli.main(["user", "check", str(world.root / "users.yaml")]) == 0
    out = capsys.readouterr().out
    assert "alice  role=admin  tenant=(every tenant)  sign-in=password" in out
    assert "erin  role=responder  tenant=(every tenant)  sign-in=proxy only" in out and "4 users OK" in out
    bad = world.root / "bad-users.yaml"
    bad.write_text("users:\n  - name: x\n    role: root\n")
    assert cli.main(["user", "check", str(bad)]) == 1
    assert f"{bad}:3: users[0].role: unknown role 'root'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"session_secret": "short"}, "session_secret: the session secret must be at least 32 bytes"),
        ({"auth_proxy_header": "X-Forwarded-User"}, "auth_proxy_header: needs auth_proxy_trusted"),
        ({"auth_proxy_trusted": ("10.0.0.0/33",)}, "auth_proxy_trusted: '10.0.0.0/33' is not an IP address"),
        ({"trusted_proxies": ("proxy.local",)}, "trusted_proxies: 'proxy.local' is not an IP address"),
        ({"users_file": "a.yaml", "users": "users: []"}, "users_file: give the users in users_file or in"),
        ({"users_file": "/no/such/users.yaml"}, "users_file: /no/such/users.yaml does not exist"),
        ({"session_max_age": 10}, "session_max_age: 10 must be from 60 seconds to 30 days"),
    ],
)
def test_bad_auth_settings_are_refused_naming_the_setting(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(settings_mod.SettingsError) as caught:
        settings_mod.load(overrides, environ={})
    assert str(caught.value).startswith(message), caught.value


def test_the_users_can_come_from_the_environment(tmp_path: Path) -> None:
    loaded = settings_mod.load(environ={"SLOSCOPE_USERS": _users_yaml(), "SLOSCOPE_SESSION_SECRET": SECRET})
    assert "password_hash" not in repr(loaded) and SECRET not in repr(loaded)
    from sloscope.app import StartupError, ui_authenticator

    assert set(ui_authenticator(loaded).config.users) == {"alice", "bob", "carol", "erin"}
    broken = settings_mod.load(environ={"SLOSCOPE_USERS": "users:\n  - name: x\n"})
    with pytest.raises(StartupError, match=r"SLOSCOPE_USERS:2: users\[0\].role: is required"):
        ui_authenticator(broken)
    (tmp_path / "secret").write_text(SECRET + "\n")
    from_file = settings_mod.load({"session_secret_file": str(tmp_path / "secret")}, environ={})
    assert from_file.session_secret == SECRET


# -- who may come in -----------------------------------------------------------------------------


def test_pages_send_browsers_to_the_login_page_and_the_api_answers_401(world: World) -> None:
    with world.client() as client:
        page = client.get("/slos/payments-availability?last=6h", headers=HTML)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fslos%2Fpayments-availability%3Flast%3D6h"
        for path in ("/api/v1/slos", "/api/v1/traces", "/jaeger/api/services", "/api", "/api/openapi.json"):
            answer = client.get(path, headers=HTML)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"] == 'Basic realm="sloscope", charset="UTF-8"'
            assert "authentication required" in answer.json()["detail"]
        # Probes, Prometheus, static files and the login page stay open.
        for path in ("/healthz", "/readyz", "/metrics", "/static/app.css", "/login"):
            assert client.get(path, headers=HTML).status_code == 200, path
        assert client.get("/runbooks/payments-availability", headers=HTML).status_code == 303


def test_login_sets_a_session_cookie_and_logout_clears_it(world: World) -> None:
    with world.client() as client:
        form = client.get("/login?next=/incidents", headers=HTML)
        csrf = client.cookies[CSRF_COOKIE]
        assert f'name="csrf_token" value="{csrf}"' in form.text
        assert 'name="next" value="/incidents"' in form.text
        # The form is CSRF-protected too: no token, no login.
        forged = client.post(
            "/login", data={"username": "alice", "password": PASSWORDS["alice"]}, headers=HTML
        )
        assert forged.status_code == 403 and SESSION_COOKIE not in set_cookies(forged)

        done = client.post(
            "/login",
            data={
                "username": "alice",
                "password": PASSWORDS["alice"],
                "csrf_token": csrf,
                "next": "/incidents",
            },
        )
        assert done.status_code == 303 and done.headers["location"] == "/incidents"
        cookie = set_cookies(done)[SESSION_COOKIE].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        assert "max-age=43200" in cookie and "secure" not in cookie  # plain HTTP: no Secure
        renewed = set_cookies(done)[CSRF_COOKIE].lower()
        assert "samesite=strict" in renewed and "httponly" in renewed
        assert client.cookies[CSRF_COOKIE] != csrf  # a new token for the new session

        page = client.get("/incidents", headers=HTML)
        assert page.status_code == 200 and '<span class="name"' in page.text and ">alice</span>" in page.text
        assert client.get("/api/v1/slos").status_code == 200  # the JSON twins work with the cookie

        out = client.post("/logout", data={"csrf_token": client.cookies[CSRF_COOKIE]})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        cleared = set_cookies(out)[SESSION_COOKIE].lower()
        assert cleared.startswith(f'{SESSION_COOKIE}=""') and "max-age=0" in cleared
        assert client.get("/incidents", headers=HTML).status_code == 303


@pytest.mark.parametrize(
    ("next_path", "location"),
    [
        ("/traces?service=a&last=1h", "/traces?service=a&last=1h"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
    ],
)
def test_login_redirects_only_to_a_path_on_this_site(world: World, next_path: str, location: str) -> None:
    assert safe_next(next_path) == location
    with world.client(cookies={CSRF_COOKIE: TOKEN}) as client:
        data = {"username": "carol", "password": PASSWORDS["carol"], "csrf_token": TOKEN, "next": next_path}
        response = client.post("/login", data=data)
    assert response.status_code == 303 and response.headers["location"] == location


def test_an_unknown_user_and_a_wrong_password_get_the_same_answer(world: World) -> None:
    answers = []
    with world.client("127.0.0.9", cookies={CSRF_COOKIE: TOKEN}) as client:
        for name, password in (("alice", "wrong"), ("mallory", "wrong"), ("erin", "anything")):
            data = {"username": name, "password": password, "csrf_token": TOKEN, "next": "/"}
            response = client.post("/login", data=data, headers=HTML)
            answers.append((response.status_code, response.text.replace(name, "NAME"), set_cookies(response)))
    assert answers[0][0] == 200 and "Wrong user name or password." in answers[0][1]
    assert answers[0] == answers[1] == answers[2]
    world.auth.throttle = LoginThrottle(world.auth.throttle.policy)  # forget these failures


def test_cookies_are_secure_over_tls_directly_or_through_a_trusted_proxy(world: World) -> None:
    data = {"username": "carol", "password": PASSWORDS["carol"], "csrf_token": TOKEN, "next": "/"}
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    with world.client("127.0.0.4", cookies={CSRF_COOKIE: TOKEN}) as proxy:  # in trusted_proxies
        behind = proxy.post("/login", data=data, headers=https)
    with world.client("127.0.0.1", cookies={CSRF_COOKIE: TOKEN}) as direct:  # not trusted: ignored
        spoofed = direct.post("/login", data=data, headers=https)
    assert behind.status_code == spoofed.status_code == 303
    assert "secure" in set_cookies(behind)[SESSION_COOKIE].lower()
    assert "secure" not in set_cookies(spoofed)[SESSION_COOKIE].lower()

    async def over_tls() -> httpx.Response:  # request.url.scheme == "https", as behind a TLS listener
        transport = httpx.ASGITransport(app=world.server.server.api_app, client=("192.0.2.1", 4000))
        base = "https://sloscope.test"
        async with httpx.AsyncClient(
            transport=transport, base_url=base, cookies={CSRF_COOKIE: TOKEN}
        ) as client:
            return await client.post("/login", data=data)

    tls = run_async(over_tls())
    assert tls.status_code == 303 and "secure" in set_cookies(tls)[SESSION_COOKIE].lower()


def test_a_session_ends_when_it_expires_or_the_password_changes() -> None:
    now = [1_000_000.0]
    user = User("zoe", "viewer", None, FAST_ARGON2.hash("one"))
    auth = Authenticator(
        AuthConfig(users={"zoe": user}, session_secret=SECRET.encode()), clock=lambda: now[0]
    )
    token = auth.issue(user)
    assert auth.session_user(token) == user
    assert auth.session_user(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None  # tampered
    assert auth.session_user(token.replace(token.split(".")[1], token.split(".")[1][::-1])) is None
    other = SessionSigner(b"another-secret-of-at-least-32-bytes!!", clock=lambda: now[0])
    assert other.read(token) is None  # another replica's secret
    now[0] += 12 * 3600 - 1
    assert auth.session_user(token) == user
    now[0] += 1
    assert auth.session_user(token) is None  # expired after 12 h
    now[0] = 1_000_000.0
    changed = User("zoe", "viewer", None, FAST_ARGON2.hash("two"))
    again = Authenticator(
        AuthConfig(users={"zoe": changed}, session_secret=SECRET.encode()), clock=lambda: now[0]
    )
    assert again.session_user(token) is None  # the new password's fingerprint differs


# -- throttling ----------------------------------------------------------------------------------


def wrong(response: httpx.Response) -> bool:
    """The login form's answer to a wrong name or password."""
    return (
        response.status_code == 200
        and "Wrong user name or password." in response.text
        and SESSION_COOKIE not in set_cookies(response)
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_are_throttled_per_user_and_per_address(world: World) -> None:
    clock = FakeClock()
    world.auth.throttle = LoginThrottle(world.auth.throttle.policy, clock=clock)

    def attempt(client: httpx.Client, name: str, password: str) -> httpx.Response:
        client.cookies.clear()  # a successful sign-in renews the CSRF cookie: start afresh each time
        client.cookies.set(CSRF_COOKIE, TOKEN)
        data = {"username": name, "password": password, "csrf_token": TOKEN, "next": "/"}
        return client.post("/login", data=data, headers=HTML)

    try:
        with world.client("127.0.0.11", cookies={CSRF_COOKIE: TOKEN}) as client:
            for _ in range(5):
                assert wrong(attempt(client, "bob", "guess"))
            locked = attempt(client, "bob", PASSWORDS["bob"])  # even the right password, for now
            assert locked.status_code == 429 and locked.headers["retry-after"] == "60"
            assert "Try again in 60 seconds" in locked.text and SESSION_COOKIE not in set_cookies(locked)
            # An unknown name is throttled the same way (nothing tells which names exist).
            for _ in range(5):
                assert wrong(attempt(client, "nobody", "guess"))
            assert attempt(client, "nobody", "guess").headers["retry-after"] == "60"
            # Over HTTP Basic too.
            api = client.get("/api/v1/slos", headers=basic("bob"))
            assert api.status_code == 429 and api.headers["retry-after"] == "60"
            clock.now += 61
            assert wrong(attempt(client, "bob", "guess"))  # the sixth failure: twice as long
            assert attempt(client, "bob", PASSWORDS["bob"]).headers["retry-after"] == "120"
            clock.now += 121
            assert attempt(client, "bob", PASSWORDS["bob"]).status_code == 303  # and it is forgotten
            assert wrong(attempt(client, "bob", "guess"))

        # One address failing for many names is locked out after 20, whatever the name.
        with world.client("127.0.0.12", cookies={CSRF_COOKIE: TOKEN}) as client:
            for i in range(20):
                assert wrong(attempt(client, f"user{i}", "guess"))
            assert attempt(client, "carol", PASSWORDS["carol"]).status_code == 429
        with world.client("127.0.0.13", cookies={CSRF_COOKIE: TOKEN}) as client:
            assert attempt(client, "carol", PASSWORDS["carol"]).status_code == 303  # another address
    finally:
        world.auth.throttle = LoginThrottle(world.auth.throttle.policy)


# -- roles and CSRF --------------------------------------------------------------------------------


def _state_changing_routes(world: World) -> list[tuple[str, str]]:
    """(method, path with sample ids) of every route of the app that is not GET/HEAD."""
    routes = []
    # iter_route_contexts: FastAPI's walk into included routers (with their prefixes).
    for route in iter_route_contexts(world.server.server.api_app.routes):  # type: ignore[union-attr]
        methods = getattr(route, "methods", None) or set()  # a Mount has none
        for method in sorted(set(methods) - {"GET", "HEAD"}):
            routes.append((method, re.sub(r"\{[^}]+\}", "no-such-id", route.path)))
    return routes


#: Routes any signed-in user (or a visitor) may POST to: they change only the browser's own state.
VIEWER_ROUTES = {("POST", "/login"), ("POST", "/logout"), ("POST", "/settings/tz")}


def test_every_state_changing_route_refuses_a_forged_request(world: World) -> None:
    routes = _state_changing_routes(world)
    expected = {
        ("POST", "/api/v1/incidents/no-such-id/ack"),
        ("POST", "/api/v1/silences"),
        ("DELETE", "/api/v1/silences/no-such-id"),
        ("POST", "/api/v1/admin/slos/reload"),
        ("POST", "/incidents/no-such-id/ack"),
        ("POST", "/incidents/no-such-id/silence"),
    } | VIEWER_ROUTES
    assert expected <= set(routes), routes
    with world.login("alice") as browser:  # an admin: only the CSRF check stands in the way
        csrf = browser.cookies[CSRF_COOKIE]
        for method, path in routes:
            # What another site can make a signed-in browser send: the cookies, a form body, no token.
            form = browser.request(method, path, data={"by": "mallory", "duration": "1h"}, headers=HTML)
            assert form.status_code == 403, (method, path, form.text)
            assert "nothing was changed" in form.text.lower(), (method, path)
            if not path.startswith("/api/"):  # pages answer a browser with an HTML page
                assert "security token" in form.text and "<h1>Forbidden" in form.text
            body = browser.request(method, path, json={"matchers": ["slo = x"], "duration": "1h"})
            assert body.status_code == 403, (method, path)  # JSON is no excuse with a session cookie
            assert "CSRF check failed" in body.json()["detail"] and "X-CSRF-Token" in body.json()["detail"]
            wrong = browser.request(method, path, headers={"X-CSRF-Token": "w" * 43, **SCRIPT})
            assert wrong.status_code == 403, (method, path)
        # HTTP Basic (a browser may remember it): a form without X-Requested-By is refused too.
        with world.client() as script:
            for method, path in routes:
                forged = script.request(method, path, data={"by": "mallory"}, headers=basic("alice"))
                assert forged.status_code == 403, (method, path)
                assert "X-Requested-By" in forged.json()["detail"]
        # With the token the same requests get past the check (to 303, 404 or 400: not 403).
        for method, path in sorted(routes, key=lambda r: r[1] == "/logout"):  # signing out last
            passed = browser.request(method, path, headers={"X-CSRF-Token": csrf, **HTML}, data={"tz": "utc"})
            assert passed.status_code != 403, (method, path, passed.text)


def test_every_state_changing_route_names_the_role_it_needs(world: World) -> None:
    with world.login("carol") as viewer:
        csrf = {"X-CSRF-Token": viewer.cookies[CSRF_COOKIE]}
        for method, path in _state_changing_routes(world):
            if (method, path) in VIEWER_ROUTES:
                continue
            response = viewer.request(method, path, headers=csrf, json={})
            assert response.status_code == 403, (method, path)
            needed = "admin" if "/admin/" in path else "responder"
            assert f"needs the {needed} role" in response.json()["detail"], (method, path)
            assert "has the viewer role" in response.json()["detail"]
        page = viewer.post("/incidents/no-such-id/ack", headers={**csrf, **HTML})
        assert page.status_code == 403 and "needs the responder role" in page.text
    with world.client() as script:
        responder = {**basic("bob"), **SCRIPT}
        created = script.post(
            "/api/v1/silences", json={"matchers": ["slo = x"], "duration": "1h"}, headers=responder
        )
        assert created.status_code == 201, created.text
        expired = script.delete(f"/api/v1/silences/{created.json()['id']}", headers=responder)
        assert expired.status_code == 200
        reload = script.post("/api/v1/admin/slos/reload", headers=responder)
        assert reload.status_code == 403 and "needs the admin role" in reload.json()["detail"]
        assert script.get("/api/v1/admin/tokens", headers=basic("carol")).status_code == 403


def test_scripts_send_a_custom_header_or_json(world: World) -> None:
    with world.client() as script:
        plain = script.post(
            "/api/v1/silences",
            content=b'{"matchers": ["slo = x"], "duration": "1h"}',
            headers={**basic("bob"), "Content-Type": "text/plain"},
        )
        assert plain.status_code == 403  # what a cross-site form (enctype text/plain) could send
        for headers in ({"X-Requested-By": "cli"}, {"Content-Type": "application/json"}):
            created = script.post(
                "/api/v1/silences",
                content=b'{"matchers": ["slo = y"], "duration": "1h"}',
                headers={**basic("bob"), **headers},
            )
            assert created.status_code == 201, created.text
            script.delete(f"/api/v1/silences/{created.json()['id']}", headers={**basic("bob"), **SCRIPT})


# -- the proxy header, HTTP Basic ----------------------------------------------------------------


def test_the_proxy_user_header_is_honoured_only_from_trusted_addresses(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    header = {"X-Forwarded-User": "erin", **HTML}
    with world.client("127.0.0.2") as proxy:  # auth_proxy_trusted
        page = proxy.get("/incidents", headers=header)
        assert page.status_code == 200 and ">erin</span>" in page.text
        assert "Sign out" not in page.text  # the proxy signs users out, not sloscope
        responder = proxy.post(
            "/api/v1/silences", json={"matchers": ["slo = z"], "duration": "1h"}, headers=header
        )
        assert responder.status_code == 201  # erin's role from the users file; JSON passes the CSRF check
        proxy.delete(f"/api/v1/silences/{responder.json()['id']}", headers={**header, **SCRIPT})
        unknown = proxy.get("/api/v1/slos", headers={"X-Forwarded-User": "mallory"})
        assert unknown.status_code == 403 and "'mallory' is not a sloscope user" in unknown.json()["detail"]
    caplog.set_level(logging.WARNING, logger="ui.auth")
    with world.client("127.0.0.3") as elsewhere:  # not trusted: the header counts for nothing
        ignored = elsewhere.get("/incidents", headers=header)
        assert ignored.status_code == 303 and ignored.headers["location"].startswith("/login")
        assert elsewhere.get("/api/v1/slos", headers={"X-Forwarded-User": "alice"}).status_code == 401
    (record,) = [r for r in caplog.records if "ignored the proxy user header" in r.getMessage()]
    assert record.client == "127.0.0.3" and record.header == "X-Forwarded-User"  # type: ignore[attr-defined]
    # A proxy-only user has no password to sign in with.
    with world.client("127.0.0.14", cookies={CSRF_COOKIE: TOKEN}) as client:
        data = {"username": "erin", "password": "", "csrf_token": TOKEN}
        refused = client.post("/login", data={**data, "password": "x"})
        assert refused.status_code == 200 and "Wrong user name or password." in refused.text
        assert SESSION_COOKIE not in set_cookies(refused)


def test_http_basic_works_and_a_success_is_remembered_briefly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []

    def counting(stored: str, password: str) -> bool:
        checks.append(password)
        return verify_password(stored, password)

    monkeypatch.setattr(auth_mod, "verify_password", counting)
    world.auth.forget_basic()  # earlier tests' checks
    with world.client("127.0.0.15") as script:
        for _ in range(3):
            assert script.get("/api/v1/slos", headers=basic("carol")).status_code == 200
        assert checks == [PASSWORDS["carol"]]  # one slow check for three requests
        wrong = script.get("/api/v1/slos", headers=basic("carol", "nope"))
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
        assert script.get("/jaeger/api/services", headers=basic("carol")).status_code == 200
        assert script.get("/api/v1/slos", headers={"Authorization": "Basic !!!"}).status_code == 401
        assert checks == [PASSWORDS["carol"], "nope"]
    world.auth.throttle = LoginThrottle(world.auth.throttle.policy)


def test_metrics_can_require_a_user_of_every_tenant() -> None:
    users = {
        "prom": User("prom", "viewer", None, FAST_ARGON2.hash("scrape")),
        "ten": User("ten", "admin", "acme", FAST_ARGON2.hash("scrape")),
    }
    registry = CollectorRegistry()
    Counter("sloscope_probe_total", "a counter", registry=registry).inc()

    async def scrape(config: AuthConfig) -> list[int]:
        app = create_app(None, registry, lambda: [], auth=Authenticator(config))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            answers = [await client.get("/metrics")]
            for user in ("prom", "ten"):
                raw = base64.b64encode(f"{user}:scrape".encode()).decode()
                answers.append(await client.get("/metrics", headers={"Authorization": f"Basic {raw}"}))
        assert all(a.status_code != 200 or "sloscope_probe_total 1.0" in a.text for a in answers)
        return [a.status_code for a in answers]

    assert run_async(scrape(AuthConfig(users=users))) == [200, 200, 200]  # open by default
    assert run_async(scrape(AuthConfig(users=users, metrics_auth=True))) == [401, 200, 403]


# -- headers, admin ---------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(world: World) -> None:
    with world.login("carol") as client:
        for path, status in (
            ("/", 200),
            ("/slos", 200),
            ("/api/v1/slos", 200),
            ("/healthz", 200),
            ("/static/app.js", 200),
            ("/no/such/page", 404),
            ("/login", 303),
        ):
            response = client.get(path, headers=HTML)
            assert response.status_code == status, path
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "same-origin"
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'self'" and "unsafe-inline" not in policy["style-src-elem"]


def test_admins_reload_the_slos_and_list_the_ingest_tokens(world: World) -> None:
    admin = {**basic("alice"), **SCRIPT}
    with world.client() as script:
        tokens = script.get("/api/v1/admin/tokens", headers=basic("alice"))
        assert tokens.json() == {"tokens": [{"name": "shop-prod", "tenant": "acme"}]}
        assert "sha256" not in tokens.text and world.ingest_token not in tokens.text
        before = {s["slo"] for s in script.get("/api/v1/slos", headers=basic("alice")).json()["slos"]}
        spec = world.root / "slos.yaml"
        original = spec.read_text()
        try:
            spec.write_text(original.replace("name: orders-monthly", "name: orders-per-month"))
            reloaded = script.post("/api/v1/admin/slos/reload", headers=admin)
            assert reloaded.status_code == 200, reloaded.text
            assert "orders-per-month" in reloaded.json()["slos"]
            after = {s["slo"] for s in script.get("/api/v1/slos", headers=basic("alice")).json()["slos"]}
            assert after == (before - {"orders-monthly"}) | {"orders-per-month"}
            assert "orders-per-month" in {s.name for s in world.server.server.slos}  # evaluations too

            spec.write_text(original.replace("objective: 99.5", "objective: 150"))
            broken = script.post("/api/v1/admin/slos/reload", headers=admin)
            assert broken.status_code == 400, broken.text
            assert "unchanged" in broken.json()["detail"]
            assert any("objective" in e for e in broken.json()["errors"])
            still = {s["slo"] for s in script.get("/api/v1/slos", headers=basic("alice")).json()["slos"]}
            assert still == after
        finally:
            spec.write_text(original)
            assert script.post("/api/v1/admin/slos/reload", headers=admin).status_code == 200


# -- the browser -------------------------------------------------------------------------------------


def test_signing_in_through_the_form_in_a_browser(world: World, page) -> None:  # noqa: ANN001
    page.goto(f"{world.api}/slos")
    assert page.url == f"{world.api}/login?next=%2Fslos"
    assert page.locator("h1").inner_text() == "Sign in to sloscope"
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "not bob's password")
    with page.expect_navigation():
        page.click("form.login button")
    assert page.locator(".login-error").inner_text() == "Wrong user name or password."
    page.fill("input[name=password]", PASSWORDS["bob"])
    with page.expect_navigation():
        page.click("form.login button")
    assert page.url == f"{world.api}/slos"
    assert page.locator("h1").inner_text() == "SLOs"
    assert page.locator("header .user .name").inner_text() == "bob"
    (session,) = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and not session["secure"]
    assert page.evaluate("document.cookie") == ""  # neither cookie is readable by scripts
    # The time-zone select still submits its form (a listener in app.js, no inline handler).
    with page.expect_navigation():
        page.select_option("header form.tz select", "browser")
    assert page.locator("body").get_attribute("data-tz") == "browser"
    screenshot(page, "auth-signed-in")
    assert page.problems == []  # no console error, no CSP violation (conftest reports those)
    # The policy is enforced: a script added at run time does not run, and is reported.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = 1'; document.head.append(s); }"
    )
    page.wait_for_timeout(100)
    assert page.evaluate("window.__ran") is None
    assert any("CSP violation" in p and "script-src" in p for p in page.problems), page.problems
    page.problems.clear()
    with page.expect_navigation():
        page.click("header form.logout button")
    assert page.url == f"{world.api}/login"
    assert [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE] == []
    page.goto(f"{world.api}/slos")
    assert page.url.startswith(f"{world.api}/login")
    assert page.problems == []
