"""--api-auth on every API route (walked from the app), --gradio-auth on the UI routes, CORS closed by default."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modules.api.auth import check_basic, origin_allowed, parse_credentials
from tests.api.conftest import build_runtime

API = "/sdapi/v1"


def app_for(data_dir: Path, *flags: str):
    from webui import create_app

    return create_app(build_runtime(data_dir, "--skip-load-model-at-start", *flags))


def api_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every API route, from the app's own OpenAPI inventory (not a hand-written list)."""
    paths = app.openapi()["paths"]
    return [(m.upper(), path) for path, ops in paths.items() if path.startswith(API) for m in ops]


@pytest.fixture(scope="module")
def auth_client(api_data_dir: Path):
    app = app_for(api_data_dir, "--nowebui", "--api-auth", "alice:wonder land,bob:builder")
    with TestClient(app) as c:
        c.routes = api_routes(app)
        yield c


def test_every_api_route_needs_credentials(auth_client) -> None:
    routes = auth_client.routes
    assert len(routes) >= 29  # the walk really found the API (a broken walk must not pass silently)
    for method, path in [*routes, ("GET", "/docs"), ("GET", "/openapi.json")]:
        r = auth_client.request(method, path, json={})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["www-authenticate"] == "Basic"
        assert r.json()["error"] == "Unauthorized"
        wrong = auth_client.request(method, path, json={}, auth=("alice", "wonder"))
        assert wrong.status_code == 401, (method, path)


def test_right_credentials_pass(auth_client) -> None:
    for user, password in (("alice", "wonder land"), ("bob", "builder")):
        assert auth_client.get(f"{API}/samplers", auth=(user, password)).status_code == 200
    assert auth_client.get("/docs", auth=("bob", "builder")).status_code == 200
    assert auth_client.get(f"{API}/samplers", auth=("bob", "wonder land")).status_code == 401


def test_unauthenticated_large_body_is_refused_before_reading(auth_client) -> None:
    r = auth_client.post(f"{API}/txt2img", content=b"x" * (60 * 1024 * 1024))
    assert r.status_code == 401


def test_check_basic_edge_cases() -> None:
    creds = parse_credentials("a:b:c, d:e")
    assert creds == {"a": "b:c", "d": "e"}

    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert check_basic(header("a:b:c"), creds) and check_basic(header("d:e"), creds)
    for bad in (None, "", "Bearer x", "Basic !!!", header("a"), header("a:b"), header(":"), header("d:e ")):
        assert not check_basic(bad, creds), bad
    with pytest.raises(ValueError, match="user:password"):
        parse_credentials("nocolon")


def test_origin_rules() -> None:
    assert origin_allowed("http://127.0.0.1:7860", "127.0.0.1:7860", "http")
    assert not origin_allowed("http://127.0.0.1:7861", "127.0.0.1:7860", "http")
    assert not origin_allowed("null", "127.0.0.1:7860", "http", ["*"])
    assert origin_allowed("https://krita.example", "h", "http", ["https://krita.example"])
    assert origin_allowed("https://a.krita.example", "h", "http", [], r"https://.*\.krita\.example")
    assert not origin_allowed("https://krita.example.evil", "h", "http", [], r"https://.*\.krita\.example")


def test_cors_closed_by_default(api_data_dir: Path) -> None:
    with TestClient(app_for(api_data_dir, "--nowebui")) as c:
        r = c.get(f"{API}/samplers", headers={"origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        pre = c.options(
            f"{API}/options", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        )
        assert "access-control-allow-origin" not in pre.headers
        r = c.post(f"{API}/options", json={}, headers={"origin": "https://evil.example"})
        assert r.status_code == 403


def test_cors_allowed_origin(api_data_dir: Path) -> None:
    app = app_for(
        api_data_dir,
        "--nowebui",
        "--cors-allow-origins",
        "https://good.example",
        "--cors-allow-origins-regex",
        r"https://.*\.plugins\.example",
        "--api-auth",
        "u:p",
    )
    with TestClient(app) as c:
        for origin in ("https://good.example", "https://krita.plugins.example"):
            pre = c.options(
                f"{API}/options",
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization",
                },
            )
            assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
            r = c.post(f"{API}/options", json={}, headers={"origin": origin}, auth=("u", "p"))
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        bad = c.options(
            f"{API}/options", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        )
        assert "access-control-allow-origin" not in bad.headers
        r = c.post(f"{API}/options", json={}, headers={"origin": "https://evil.example"}, auth=("u", "p"))
        assert r.status_code == 403


@pytest.fixture(scope="module")
def ui_app(api_data_dir: Path):
    return app_for(api_data_dir, "--api", "--gradio-auth", "ui:secret")


def test_gradio_auth_covers_ui_routes(ui_app) -> None:
    with TestClient(ui_app) as c:
        for path in ("/config", "/gradio_api/info", "/gradio_api/queue/status", "/gradio_api/file=config.json"):
            assert c.get(path).status_code == 401, path
        # Every route of our own app besides the API and its docs belongs to Gradio (nothing unprotected added).
        own = [path for path in ui_app.openapi()["paths"] if not path.startswith(API)]
        assert own == [], own
        assert c.post("/login", data={"username": "ui", "password": "wrong"}).status_code in (400, 401)
        assert c.post("/login", data={"username": "ui", "password": "secret"}).status_code == 200
        assert c.get("/config").status_code == 200


def test_api_is_served_beside_the_ui(ui_app) -> None:
    # As A1111: --gradio-auth alone does not cover /sdapi (use --api-auth for that).
    with TestClient(ui_app) as c:
        assert c.get(f"{API}/samplers").status_code == 200
        assert c.get("/docs").status_code == 200


def test_api_absent_without_flag(api_data_dir: Path) -> None:
    app = app_for(api_data_dir)
    assert api_routes(app) == []
    with TestClient(app) as c:
        assert c.get("/openapi.json").status_code != 200 or API not in c.get("/openapi.json").text
