"""The dashboard over plain HTTP (no browser): escaping, cookies, CSRF, tenant isolation, redirects, headers."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import RunningServer, serve_api
from tests.ui.helpers import Tenant, browser_client, csrf_of, log_in

pytestmark = pytest.mark.integration

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
EVIL_TOPIC = "<img src=x onerror=alert(2)>"
QUOTES = '"><b>bold</b>'
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def assert_no_markup_injected(html: str) -> None:
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<b>bold</b>" not in html
    # the page's own script tag is the only one
    assert len(re.findall(r"<script\b", html)) == 1, re.findall(r"<script\b[^>]*>", html)


def test_a_workflow_and_a_state_named_script_render_as_text(session: httpx.Client, tenant: Tenant) -> None:
    workflow = {
        "id": "evil", "displayName": EVIL, "initialState": "start",
        "states": {
            "start": {"displayName": EVIL, "transitions": [
                {"id": "go", "trigger": EVIL_TOPIC, "target": "start",
                 "actions": [{"type": "set-context", "values": {"share": "context.total / trigger.content.parts"}}]}]},
        },
    }
    assert tenant.api.put(f"/tenants/{tenant.id}/workflows/evil", json=workflow).status_code in (200, 201)
    instance_id = f"evil-{uuid.uuid4().hex[:6]}"
    created = tenant.api.post(f"/tenants/{tenant.id}/instances", headers={"Prefer": "wait=10"}, json={
        "workflowId": "evil", "id": instance_id, "context": {"total": 1, EVIL: EVIL, "q": QUOTES}, "interests": [EVIL]})
    assert created.status_code == 201, created.text
    faulted = tenant.api.post(f"/tenants/{tenant.id}/instances/{instance_id}/triggers", headers={"Prefer": "wait=10"},
                              json={"id": "evil-trigger", "topic": EVIL_TOPIC, "content": {"parts": 0, "why": EVIL}})
    assert faulted.json()["outcome"] == "faulted", faulted.text

    pages = {
        "overview": session.get("/ui/"),
        "list": session.get("/ui/instances", params={"workflow": "evil", "state": EVIL}),
        "list-all": session.get("/ui/instances", params={"workflow": "evil"}),
        "instance": session.get(f"/ui/instances/{instance_id}"),
        "feed": session.get("/ui/feed"),
        "bad-status": session.get("/ui/instances", params={"status": EVIL}),
        "not-found": session.get(f"/ui/instances/{EVIL}"),
    }
    for name, response in pages.items():
        assert response.status_code in (200, 404), (name, response.status_code)
        assert_no_markup_injected(response.text)
    instance_html = pages["instance"].text
    assert EVIL_ESCAPED in instance_html  # the workflow's and the state's display names, the context, the diagram
    assert instance_html.count(EVIL_ESCAPED) >= 4
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</text>" in instance_html, "the SVG box label is escaped text"
    assert "onerror=alert(2)&gt;</text>" in instance_html, "the SVG arrow label is escaped text"
    assert EVIL_ESCAPED in pages["overview"].text and EVIL_ESCAPED in pages["list-all"].text

    # A reason (free text) goes through the confirm page and into the timeline, still as text.
    csrf = csrf_of(instance_html)
    confirm = session.post(f"/ui/instances/{instance_id}/recover",
                           data={"csrf": csrf, "mode": "reset", "state": "start", "reason": EVIL, "op": "evil-op"})
    assert confirm.status_code == 200
    assert_no_markup_injected(confirm.text)
    assert f'value="{EVIL_ESCAPED}"' in confirm.text
    done = session.post(f"/ui/instances/{instance_id}/recover", data={
        "csrf": csrf, "mode": "reset", "state": "start", "reason": EVIL, "op": "evil-op", "confirmed": "yes"})
    assert done.status_code == 303
    after = session.get(f"/ui/instances/{instance_id}")
    assert_no_markup_injected(after.text)
    assert "Recovered" in after.text

    events = session.get("/ui/feed/events", params={"after": 0}).json()["events"]
    assert any(event["subject"] == instance_id for event in events)


def test_the_session_cookie_is_httponly_samesite_strict_and_scoped_to_ui(ui_server: RunningServer,
                                                                         tenant: Tenant) -> None:
    with browser_client(ui_server) as http:
        response = log_in(http, tenant.key)
        assert response.status_code == 303
        cookie = next(value for value in response.headers.get_list("set-cookie")
                      if value.startswith("waymark_session="))
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "samesite=strict"
        assert attributes["path"] == "Path=/ui"
        assert "secure" not in attributes, "plain http: a Secure cookie would never come back"
        session_id = cookie.split(";")[0].split("=", 1)[1]
        assert len(session_id) >= 40 and tenant.key not in cookie
        page = http.get("/ui/")
        assert page.status_code == 200 and tenant.key not in page.text, "the key never goes back to the browser"


def test_the_session_cookie_is_secure_over_https(ui_server: RunningServer, tenant: Tenant) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (a local TLS-ending proxy): the request is https then.
    # (Only on the POST: the login form's own cookie would be Secure too, and httpx keeps it off plain http.)
    with browser_client(ui_server) as http:
        response = log_in(http, tenant.key, headers={"X-Forwarded-Proto": "https"})
        cookie = next(value for value in response.headers.get_list("set-cookie")
                      if value.startswith("waymark_session="))
        assert "secure" in cookie.lower().split("; ")


def test_a_login_form_from_elsewhere_is_refused(ui_server: RunningServer, tenant: Tenant) -> None:
    with browser_client(ui_server) as http:
        refused = http.post("/ui/login", data={"csrf": "forged", "key": tenant.key})
        assert refused.status_code == 403 and "waymark_session" not in refused.headers.get("set-cookie", "")
        form = http.get("/ui/login")
        cross = http.post("/ui/login", data={"csrf": csrf_of(form.text), "key": tenant.key},
                          headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403


def test_a_bad_key_is_refused_and_not_echoed(ui_server: RunningServer) -> None:
    with browser_client(ui_server) as http:
        response = log_in(http, "wmk_not-a-key-at-all-0123456789")
        assert response.status_code == 401 and "not valid" in response.text
        assert "wmk_not-a-key-at-all" not in response.text
        assert http.get("/ui/").status_code == 303


def test_the_admin_key_with_a_tenant_id(ui_server: RunningServer, tenant: Tenant) -> None:
    with browser_client(ui_server) as http:
        missing = log_in(http, ui_server.admin_key)
        assert missing.status_code == 400 and "tenant" in missing.text
        unknown = log_in(http, ui_server.admin_key, tenant="no-such-tenant")
        assert unknown.status_code == 404
        ok = log_in(http, ui_server.admin_key, tenant=tenant.id, name="Ada")
        assert ok.status_code == 303
        overview = http.get("/ui/")
        assert overview.status_code == 200 and tenant.id in overview.text and "(admin)" in overview.text


@pytest.mark.parametrize("forge", [
    {"csrf": None},
    {"csrf": "wrong-token"},
    {"headers": {"Origin": "https://evil.example"}},
    {"headers": {"Sec-Fetch-Site": "cross-site"}},
    {"headers": {"Origin": "null"}},
])
def test_a_post_without_the_right_token_or_from_another_site_is_refused(session: httpx.Client, tenant: Tenant,
                                                                        forge: dict[str, Any]) -> None:
    instance_id = tenant.faulted()
    csrf = csrf_of(session.get(f"/ui/instances/{instance_id}").text)
    form = {"mode": "reset", "state": "due", "reason": "forged", "confirmed": "yes",
            "csrf": forge.get("csrf", csrf)}
    data = {name: value for name, value in form.items() if value is not None}
    for action in ("recover", "terminate"):
        response = session.post(f"/ui/instances/{instance_id}/{action}", data=data, headers=forge.get("headers"))
        assert response.status_code == 403, (action, response.status_code)
    logout = session.post("/ui/logout", data={"csrf": data.get("csrf", "")}, headers=forge.get("headers"))
    assert logout.status_code == 403
    assert tenant.status_of(instance_id) == "Faulted", "nothing was done"
    assert session.get("/ui/").status_code == 200, "still logged in"


def test_the_right_token_from_the_same_origin_is_accepted(ui_server: RunningServer, session: httpx.Client,
                                                          tenant: Tenant) -> None:
    instance_id = tenant.faulted()
    csrf = csrf_of(session.get(f"/ui/instances/{instance_id}").text)
    response = session.post(f"/ui/instances/{instance_id}/terminate",
                            data={"csrf": csrf, "reason": "written off", "confirmed": "yes"},
                            headers={"Origin": ui_server.url, "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303 and response.headers["location"] == f"/ui/instances/{instance_id}"
    assert tenant.status_of(instance_id) == "Terminated"
    page = session.get(f"/ui/instances/{instance_id}").text
    assert "Terminated" in page and "written off" in page
    logout = session.post("/ui/logout", data={"csrf": csrf})
    assert logout.status_code == 303
    assert session.get("/ui/").status_code == 303, "logged out"


def test_without_confirmation_an_action_only_shows_the_confirm_page(session: httpx.Client, tenant: Tenant) -> None:
    instance_id = tenant.faulted()
    csrf = csrf_of(session.get(f"/ui/instances/{instance_id}").text)
    confirm = session.post(f"/ui/instances/{instance_id}/recover",
                           data={"csrf": csrf, "mode": "retry", "reason": "service back", "op": "op-1"})
    assert confirm.status_code == 200 and 'name="confirmed" value="yes"' in confirm.text
    assert tenant.status_of(instance_id) == "Faulted"
    missing_reason = session.post(f"/ui/instances/{instance_id}/recover",
                                  data={"csrf": csrf, "mode": "retry", "reason": " ", "confirmed": "yes"})
    assert missing_reason.status_code == 303
    assert "Give a reason" in session.get(f"/ui/instances/{instance_id}").text
    assert tenant.status_of(instance_id) == "Faulted"


def test_a_tenant_cannot_see_or_touch_another_tenants_instances(ui_server: RunningServer, tenant: Tenant,
                                                                other_tenant: Tenant) -> None:
    theirs = tenant.faulted()
    with browser_client(ui_server) as http:
        assert log_in(http, other_tenant.key).status_code == 303
        page = http.get(f"/ui/instances/{theirs}")
        assert page.status_code == 404 and theirs in page.text  # "no instance <id> in tenant <other>"
        assert tenant.id not in page.text.replace(f"tenant '{other_tenant.id}'", "")
        assert theirs not in http.get("/ui/instances").text
        assert theirs not in http.get("/ui/").text
        assert theirs not in http.get("/ui/feed").text
        assert all(e["subject"] != theirs for e in http.get("/ui/feed/events", params={"after": 0}).json()["events"])
        csrf = csrf_of(http.get("/ui/").text)
        forced = http.post(f"/ui/instances/{theirs}/terminate", data={"csrf": csrf, "reason": "x", "confirmed": "yes"})
        assert forced.status_code == 404
        # the tenant in a query parameter or a form field is never used: the session's tenant is
        assert theirs not in http.get("/ui/instances", params={"tenant": tenant.id}).text
    assert tenant.status_of(theirs) == "Faulted"


@pytest.mark.parametrize("path", ["/ui/", "/ui/instances", "/ui/instances?status=Faulted", "/ui/instances/x-1",
                                  "/ui/feed"])
def test_unauthenticated_pages_redirect_to_the_login_page(ui_server: RunningServer, path: str) -> None:
    with browser_client(ui_server) as http:
        response = http.get(path)
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/ui/login?next=")
        assert httpx.URL(location).params["next"] == path
        assert http.get(location).status_code == 200


def test_unauthenticated_json_and_posts_get_nothing(ui_server: RunningServer, tenant: Tenant) -> None:
    with browser_client(ui_server) as http:
        feed = http.get("/ui/feed/events", params={"after": 0})
        assert feed.status_code == 401 and feed.json() == {"error": "not logged in"}
        post = http.post(f"/ui/instances/{tenant.faulted()}/terminate", data={"reason": "x", "confirmed": "yes"})
        assert post.status_code == 303 and post.headers["location"].startswith("/ui/login")
        http.cookies.set("waymark_session", "made-up", domain="127.0.0.1", path="/ui")
        assert http.get("/ui/").status_code == 303
    assert httpx.get(f"{ui_server.url}/ui").status_code in (301, 307, 308)


def test_login_goes_back_to_the_page_asked_for_but_never_elsewhere(ui_server: RunningServer, tenant: Tenant) -> None:
    with browser_client(ui_server) as http:
        form = http.get("/ui/login", params={"next": "/ui/feed"})
        assert 'name="next" value="/ui/feed"' in form.text
        back = http.post("/ui/login", data={"csrf": csrf_of(form.text), "key": tenant.key, "next": "/ui/feed"})
        assert back.headers["location"] == "/ui/feed"
    for elsewhere in ("//evil.example/", "https://evil.example/", "/tenants/x", "/ui\\@evil.example"):
        with browser_client(ui_server) as http:
            form = http.get("/ui/login")
            response = http.post("/ui/login", data={"csrf": csrf_of(form.text), "key": tenant.key,
                                                    "next": elsewhere})
            assert response.headers["location"] == "/ui/", elsewhere


def test_a_session_opens_on_another_process_of_the_host_and_ends_on_logout(ui_server: RunningServer,
                                                                           tenant: Tenant) -> None:
    """A scaled-out host: another server on the same data directory (the same server secret) serves the pages of
    a session made here, with no sticky routing."""

    def with_cookie(value: str) -> dict[str, str]:
        return {"Cookie": f"waymark_session={value}"}

    with browser_client(ui_server) as http:
        assert log_in(http, tenant.key, name="Jo").status_code == 303
        cookie = http.cookies["waymark_session"]
        with serve_api(ui_server.data_dir, workers=0) as other, browser_client(other) as elsewhere:
            page = elsewhere.get("/ui/", headers=with_cookie(cookie))
            assert page.status_code == 200 and tenant.id in page.text
            resealed = page.cookies["waymark_session"]
            assert resealed != cookie, "sealed again on every response"
            assert elsewhere.get("/ui/", headers=with_cookie(resealed)).status_code == 200
            changed = cookie[:-10] + ("A" if cookie[-10] != "A" else "B") + cookie[-9:]
            assert elsewhere.get("/ui/", headers=with_cookie(changed)).status_code == 303, "a changed cookie opens nothing"
        out = http.post("/ui/logout", data={"csrf": csrf_of(http.get("/ui/").text)})
        assert out.status_code == 303 and "waymark_session" not in http.cookies
    with browser_client(ui_server) as fresh:
        assert fresh.get("/ui/", headers=with_cookie(cookie)).status_code == 303, \
            "this process refuses a session logged out here"


def test_a_rotated_key_ends_the_session(ui_server: RunningServer, other_tenant: Tenant) -> None:
    with browser_client(ui_server) as http:
        assert log_in(http, other_tenant.key).status_code == 303
        assert http.get("/ui/").status_code == 200
        rotated = other_tenant.api.post(f"/tenants/{other_tenant.id}/keys")
        assert rotated.status_code == 200, rotated.text
        other_tenant.key = rotated.json()["key"]
        other_tenant.api.headers["Authorization"] = f"Bearer {other_tenant.key}"
        assert http.get("/ui/").status_code == 303


@pytest.mark.parametrize("path", ["/ui/", "/ui/instances", "/ui/feed", "/ui/static/app.css", "/ui/static/app.js",
                                  "/ui/no-such-page"])
def test_security_headers_on_every_dashboard_response(session: httpx.Client, path: str) -> None:
    response = session.get(path)
    assert response.status_code in (200, 404)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'self'") and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    if not path.startswith("/ui/static/"):
        assert response.headers["cache-control"] == "no-store"


def test_security_headers_on_the_login_page_and_redirects(ui_server: RunningServer) -> None:
    with browser_client(ui_server) as http:
        for response in (http.get("/ui/login"), http.get("/ui/instances")):
            assert response.headers["content-security-policy"].startswith("default-src 'self'")
            assert response.headers["x-frame-options"] == "DENY"


def test_no_inline_script_or_style_on_any_page(session: httpx.Client, tenant: Tenant) -> None:
    instance_id = tenant.faulted()
    for path in ("/ui/", "/ui/instances", f"/ui/instances/{instance_id}", "/ui/feed"):
        html = session.get(path).text
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/ui/static/app.js" defer>']
        assert " style=" not in html and "<style" not in html and " on" + "click=" not in html


@pytest.mark.parametrize("sort", ["updated", "id"])
def test_the_list_filters_and_pages(session: httpx.Client, tenant: Tenant, sort: str) -> None:
    made = sorted(tenant.faulted() for _ in range(3))
    waiting = tenant.waiting()
    for _ in range(26):  # more than a page of 25
        tenant.waiting()
    listed = session.get("/ui/instances", params={"workflow": "payments", "status": "Faulted", "state": "due",
                                                  "sort": sort}).text
    assert all(instance_id in listed for instance_id in made) and waiting not in listed
    seen: list[str] = []
    url: str | None = f"/ui/instances?workflow=payments&sort={sort}"
    pages = 0
    while url is not None and pages < 50:
        html = session.get(url).text
        seen += re.findall(r'<a class="mono" href="/ui/instances/([^"]+)"', html)
        following = re.search(r'href="(/ui/instances\?[^"]*)" rel="next"', html)
        url = following.group(1).replace("&amp;", "&") if following else None
        pages += 1
    assert pages >= 2, "more than one page of 25"
    assert len(seen) == len(set(seen)) and set(made) | {waiting} <= set(seen)
    for junk in ({"before": "not-a-position"}, {"page": "x"}, {"sort": "nonsense"}, {"q": "x" * 5000}):
        assert session.get("/ui/instances", params=junk).status_code == 200
