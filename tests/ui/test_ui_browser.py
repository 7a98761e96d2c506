"""The dashboard in a real browser: Debian's Chromium, driven by Playwright (never a downloaded browser).

The operator's path: log in, filter the list to a faulted instance, open it, read the diagram and the timeline,
recover it through the confirmation step, see it Waiting again. Each page is saved as a screenshot under
test-artifacts/ui/. Chromium is installed by `make test` (`apt-get install chromium`); without it these tests
fail, on purpose: a dashboard nobody opened in a browser is not tested.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)

from tests.integration.conftest import RunningServer
from tests.ui.helpers import ARTIFACTS, Tenant, published, saved

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the dashboard's browser tests drive Debian's chromium. Install it with "
                    "`apt-get update && apt-get install -y chromium` (`make test` does), never `playwright install`.",
                    pytrace=False)
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Console:
    """Errors the pages log (a Content-Security-Policy violation is one): there must be none."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page) -> Page:
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        return page

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    yield context
    context.close()


def shoot(page: Page, artifacts: Path, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=saved(artifacts, name), full_page=full_page, animations="disabled")
    published(artifacts, name)


def log_in(page: Page, server: RunningServer, tenant: Tenant, artifacts: Path | None = None) -> None:
    page.goto(f"{server.url}/ui/")
    expect(page).to_have_url(f"{server.url}/ui/login?next=%2Fui%2F")
    page.get_by_label("Key").fill(tenant.key)
    page.get_by_label("Your name").fill("Jo Operator")
    if artifacts is not None:
        shoot(page, artifacts, "01-login")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_operator_finds_and_recovers_a_faulted_instance(ui_server: RunningServer, tenant: Tenant,
                                                           context: BrowserContext, console: Console,
                                                           artifacts: Path) -> None:
    # Something to look at: claims in a few states, payments waiting, one completed, and the faulted one.
    submitted = []
    for amount in (12.5, 80, 230):
        claim = tenant.waiting("expense-claim", {"claimant": "J George"}, prefix="claim")
        tenant.trigger(claim, "update", {"amount": amount})
        if amount > 50:
            assert tenant.trigger(claim, "submit") == "applied"
            submitted.append(claim)
    tenant.waiting()
    done = tenant.waiting()
    assert tenant.trigger(done, "pay") == "applied"
    faulted = tenant.faulted()

    page = console.watch(context.new_page())
    log_in(page, ui_server, tenant, artifacts)
    tiles = page.get_by_role("list", name="Instances by status")
    expect(tiles.get_by_role("link", name="1 Faulted")).to_be_visible()
    expect(page.locator("#recent-faults")).to_contain_text(faulted)
    shoot(page, artifacts, "02-overview")

    # The list, filtered to the faulted payments.
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Instances").click()
    page.get_by_label("Workflow").select_option("payments")
    page.get_by_label("Status").select_option("Faulted")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{ui_server.url}/ui/instances?q=&workflow=payments&state=&status=Faulted&sort=updated")
    rows = page.locator("#instance-list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Faulted")
    shoot(page, artifacts, "03-instances-filtered")

    # The instance: diagram with the current state highlighted, the fault, the timeline, the explanation.
    rows.first.get_by_role("link", name=faulted).click()
    expect(page.get_by_role("heading", name=faulted)).to_be_visible()
    expect(page.locator("#instance-status")).to_have_text("Faulted")
    diagram = page.locator("svg.diagram")
    expect(diagram).to_be_visible()
    current = diagram.locator("g.node.current")
    expect(current).to_have_count(1)
    expect(current).to_have_attribute("data-state", "due")
    assert current.locator("rect").first.evaluate("r => getComputedStyle(r).strokeWidth") == "3px", \
        "the current state is drawn with a heavier border (the stylesheet applies)"
    expect(diagram.locator("g.node[data-state=paid]")).not_to_have_class("node current")
    expect(page.locator("#fault")).to_contain_text("DivisionByZero")
    timeline = page.locator("#timeline > li")
    expect(timeline).to_have_count(2)
    expect(timeline.nth(1)).to_have_attribute("data-type", "Faulted")
    expect(timeline.nth(1)).to_contain_text("Faulted on trigger split")
    expect(page.locator("#explanation")).to_contain_text("FAULTED on trigger 'split'")
    shoot(page, artifacts, "04-instance-faulted", full_page=True)

    # Recover: reset to `due` with a reason, confirmed in the dialog.
    reset = page.locator("#reset-form")
    reset.get_by_label("State").select_option("due")
    reset.get_by_label("Reason").fill("parts was 0 by mistake; the split is redone by hand")
    reset.get_by_role("button", name="Reset…").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Reset {faulted} to the chosen state?")
    expect(dialog).to_contain_text("parts was 0 by mistake")
    shoot(page, artifacts, "05-confirm-dialog")
    assert tenant.status_of(faulted) == "Faulted", "nothing happens before the confirmation"
    dialog.get_by_role("button", name="Confirm").click()

    expect(page.locator("#instance-status")).to_have_text("Waiting")
    expect(page.locator(".flash.success")).to_contain_text(f"{faulted} is now Waiting in state due")
    expect(page.locator("#timeline > li").last).to_have_attribute("data-type", "Recovered")
    expect(page.locator("#timeline > li").last).to_contain_text("Jo Operator")
    expect(page.locator("#fault")).to_have_count(0)
    expect(page.locator("#retry-form")).to_have_count(0)
    shoot(page, artifacts, "06-instance-recovered", full_page=True)
    assert tenant.status_of(faulted) == "Waiting"

    # A bigger diagram: the expense claim, waiting for approval (a loop, a way back, two ways out).
    page.goto(f"{ui_server.url}/ui/instances/{submitted[0]}")
    claim_diagram = page.locator("svg.diagram")
    expect(claim_diagram.locator("g.node.current")).to_have_attribute("data-state", "awaiting-approval")
    expect(claim_diagram.locator("g.edge.from-current")).to_have_count(2)  # approve, reject
    expect(claim_diagram.locator("g.node")).to_have_count(5)
    # the path it took: update (a loop on draft), then submit; the states it was in
    expect(claim_diagram.locator("g.edge.taken")).to_have_count(2)
    expect(claim_diagram.locator("g.node.visited")).to_have_count(2)  # draft, and awaiting-approval (current)
    page.locator("section", has=claim_diagram).screenshot(path=saved(artifacts, "11-diagram"),
                                                          animations="disabled")
    published(artifacts, "11-diagram")
    assert console.errors == []


def test_the_live_feed_shows_new_events_as_they_happen(ui_server: RunningServer, tenant: Tenant,
                                                        context: BrowserContext, console: Console,
                                                        artifacts: Path) -> None:
    page = console.watch(context.new_page())
    log_in(page, ui_server, tenant)
    page.get_by_role("link", name="Live feed").click()
    expect(page.locator("#feed-status")).to_have_text("Live.")
    before = page.locator("#feed-rows tr").count()
    created = tenant.waiting(prefix="live")
    tenant.faulted()
    fresh = page.locator("#feed-rows tr").first
    expect(page.locator("#feed-rows")).to_contain_text(created, timeout=TIMEOUT_MS)
    expect(fresh.locator(".badge").first).to_have_text("faulted")
    stored = fresh.locator("time").get_attribute("datetime")
    assert stored and fresh.locator("time").get_attribute("title") == stored  # the full value on hover
    assert page.locator("#feed-rows tr").count() >= before + 3
    expect(page.locator("#feed-status")).to_contain_text("Updated")
    page.wait_for_timeout(2100)  # the highlight of the new rows fades in 2 s: a calm screenshot
    shoot(page, artifacts, "07-live-feed")
    assert console.errors == []


def test_without_javascript_the_confirm_page_asks_first(ui_server: RunningServer, tenant: Tenant,
                                                        browser: Browser, artifacts: Path) -> None:
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        log_in(page, ui_server, tenant)
        instance_id = tenant.faulted()
        page.goto(f"{ui_server.url}/ui/instances/{instance_id}")
        terminate = page.locator("#terminate-form")
        terminate.get_by_label("Reason").fill("the customer cancelled")
        terminate.get_by_role("button", name="Terminate…").click()
        expect(page.get_by_role("heading", name=f"Confirm: terminate {instance_id}")).to_be_visible()
        shoot(page, artifacts, "08-confirm-page")
        assert tenant.status_of(instance_id) == "Faulted"
        page.get_by_role("button", name="Terminate").click()
        expect(page.locator("#instance-status")).to_have_text("Terminated")
        expect(page.locator(".flash.success")).to_contain_text("Terminated")
    finally:
        context.close()


def test_narrow_screen_and_dark_mode(ui_server: RunningServer, tenant: Tenant, browser: Browser,
                                     artifacts: Path) -> None:
    instance_id = tenant.faulted()
    for name, options in (("09-phone", {"viewport": PHONE, "color_scheme": "light", "is_mobile": True}),
                          ("10-dark", {"viewport": DESKTOP, "color_scheme": "dark"})):
        context = browser.new_context(**options)  # type: ignore[arg-type]
        try:
            console = Console()
            page = console.watch(context.new_page())
            log_in(page, ui_server, tenant)
            page.goto(f"{ui_server.url}/ui/instances/{instance_id}")
            expect(page.locator("svg.diagram g.node.current")).to_have_attribute("data-state", "due")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= options["viewport"]["width"], f"{name}: the page scrolls sideways ({width}px)"  # type: ignore[index]
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            dark = background == "rgb(18, 21, 27)"
            assert dark == (options["color_scheme"] == "dark"), background
            shoot(page, artifacts, f"{name}-instance", full_page=name.endswith("phone"))
            if name == "09-phone":
                # The diagram keeps its size and scrolls sideways in its card; the page itself does not.
                wrap = page.locator(".diagram-wrap")
                svg = wrap.locator("svg.diagram")
                drawn = svg.evaluate("s => s.getBoundingClientRect().width")
                assert abs(drawn - float(svg.get_attribute("width") or 0)) < 1, "the diagram is not shrunk"
                claim = tenant.waiting("expense-claim", {"claimant": "J George"}, prefix="phone")
                page.goto(f"{ui_server.url}/ui/instances/{claim}")
                wrap = page.locator(".diagram-wrap")
                assert wrap.evaluate("w => w.scrollWidth > w.clientWidth"), "a wide diagram scrolls in its card"
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
                expect(page.locator(".scroll-hint")).to_be_visible()
                wrap.evaluate("w => { w.scrollLeft = 120; }")
                wrap.screenshot(path=saved(artifacts, "09-phone-diagram"), animations="disabled")
                published(artifacts, "09-phone-diagram")
            if name == "10-dark":
                page.goto(f"{ui_server.url}/ui/")
                shoot(page, artifacts, "10-dark-overview")
            assert console.errors == []
        finally:
            context.close()


def test_api_docs_work_offline(ui_server: RunningServer, browser: Browser, artifacts: Path) -> None:
    """`/` leads to the dashboard; Swagger UI (`/docs`) and ReDoc (`/redoc`) render the API with every request
    answered by the server itself: anything else is refused here, as it would be with no network."""
    context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    elsewhere: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(ui_server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    try:
        console = Console()
        page = console.watch(context.new_page())
        page.goto(f"{ui_server.url}/")
        expect(page).to_have_url(f"{ui_server.url}/ui/login?next=%2Fui%2F")
        page.goto(f"{ui_server.url}/docs")
        expect(page.locator(".swagger-ui .opblock-summary-path", has_text="/tenants/{tenant}/instances/{instance_id}/triggers").first).to_be_visible()
        shoot(page, artifacts, "20-swagger-ui")
        page.goto(f"{ui_server.url}/redoc")
        expect(page.get_by_role("heading", name="Send a trigger to one instance", exact=False).first).to_be_visible()
        shoot(page, artifacts, "21-redoc")
        # ReDoc's bundle draws its maker's logo ("API docs by Redocly") from their site: the one request that
        # leaves, a footer image; nothing that renders the document needs it.
        assert [url for url in elsewhere if url != REDOC_LOGO] == []
        assert console.errors == ["Failed to load resource: net::ERR_FAILED"] * len(elsewhere), console.errors
    finally:
        context.close()
