"""The dashboard in a real headless Chromium (Debian's ``chromium``) against a local cluster.

Set ``CLIPPER_SCREENSHOT_DIR=docs/images`` to refresh the screenshots of docs/dashboard.md.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from clipper_admin.deployers import python as python_deployer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "dashboard-test-token"


def doubler(xs):
    return [str(2 * sum(x)) for x in xs]


def tripler(xs):
    return [str(3 * sum(x)) for x in xs]


def broken(xs):
    raise RuntimeError("this model always fails")


@pytest.fixture(scope="module")
def cluster(conn):
    conn.register_application("dash-app", "doubles", "-1.0", 200000)
    python_deployer.deploy_python_closure(conn, "dash-model", 1, "doubles", doubler)
    python_deployer.deploy_python_closure(conn, "dash-model", 2, "doubles", tripler)
    conn.link_model_to_app("dash-app", "dash-model")
    conn.register_application("dash-broken", "doubles", "-1.0", 200000)
    python_deployer.deploy_python_closure(conn, "broken-model", 1, "doubles", broken)
    conn.link_model_to_app("dash-broken", "broken-model")
    return conn


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    yield context.new_page()
    context.close()


class Load:
    """Queries the two apps from a thread until stopped."""

    def __init__(self, conn) -> None:
        self.url = f"http://{conn.get_query_addr()}"
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        session = requests.Session()
        i = 0
        while not self.stopped.is_set():
            i += 1
            for app in ("dash-app", "dash-broken"):
                session.post(f"{self.url}/{app}/predict", json={"input": [float(i % 7), 1.0]},
                             timeout=10)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(10)


def chart_value(page: Page, key: str, series: int = 0) -> float | None:
    return page.evaluate(
        "([k, s]) => { const c = window.clipperDashboard.charts[k]; return c ? c.last(s) : null }",
        [key, series])


def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("CLIPPER_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)
    assert (folder / name).stat().st_size > 10_000


def test_dashboard_shows_live_charts_under_load_and_runs_actions(cluster, page, helpers,
                                                                   tmp_path):
    wait_until = helpers.wait_until
    admin = f"http://{cluster.cm.get_admin_addr()}"
    page.goto(f"{admin}/dashboard?interval=500")
    expect(page.locator('[data-app="dash-app"] .meta')).to_contain_text(
        "doubles · SLO 200 ms · default \"-1.0\" · model dash-model:2")
    expect(page.locator('[data-model="dash-model:2"] .roles')).to_have_text("current")
    expect(page.locator('[data-model="dash-model:1"] .roles')).to_have_text("")
    expect(page.locator('[data-model="dash-model:2"] .health')).to_have_text("healthy",
                                                                              timeout=60_000)

    with Load(cluster):
        wait_until(lambda: (chart_value(page, "app:dash-app:predictions") or 0) > 1,
                   60, "predictions/s of dash-app on its chart")
        wait_until(lambda: (chart_value(page, "model:dash-model:2:predictions") or 0) > 1,
                   30, "predictions/s of dash-model:2 on its chart")
        p99 = chart_value(page, "app:dash-app:latency", 1)
        assert p99 is not None and 0 < p99 < 200
        wait_until(lambda: (chart_value(page, "model:dash-model:2:batching") or 0) >= 1,
                   30, "the mean batch size on its chart")
        wait_until(lambda: (chart_value(page, "app:dash-broken:predictions", 1) or 0) > 0,
                   30, "default outputs/s of dash-broken")
        expect(page.locator("#errors")).to_contain_text("model broken-model:1", timeout=30_000)
        expect(page.locator("#errors")).to_contain_text("app dash-broken")
        wait_until(lambda: page.evaluate(
            "window.clipperDashboard.charts['app:dash-app:latency'].points.length") >= 16,
            30, "16 points on the latency chart")
        screenshot(page, "dashboard.png", tmp_path)

    # actions: make version 1 current, scale it to 2 replicas
    page.locator('[data-set-version="dash-model:1"]').click()
    wait_until(lambda: cluster.get_current_model_version("dash-model") == "1", 30,
               "version 1 current")
    expect(page.locator('[data-model="dash-model:1"] .roles')).to_have_text("current")
    expect(page.locator('[data-app="dash-app"] .meta')).to_contain_text("model dash-model:1")
    page.locator('[data-scale="dash-model:1"]').fill("2")
    page.locator('[data-scale-button="dash-model:1"]').click()
    wait_until(lambda: sum(r.startswith("dash-model:1:")
                           for r in cluster.get_all_model_replicas()) == 2, 90,
               "2 connected replicas of dash-model:1")
    expect(page.locator('[data-model="dash-model:1"] .replicas')).to_have_text("2",
                                                                              timeout=30_000)
    assert requests.post(f"http://{cluster.get_query_addr()}/dash-app/predict",
                         json={"input": [1.0, 2.0]}, timeout=10).json()["output"] == 6.0


def test_versions_show_the_traffic_split_and_the_shadows(cluster, page, helpers, tmp_path):
    python_deployer.deploy_python_closure(cluster, "dash-model", 3, "doubles", tripler)
    cluster.set_traffic_split("dash-model", {"3": 3, "1": 1})
    cluster.set_shadow_versions("dash-model", ["2"])
    page.goto(f"http://{cluster.cm.get_admin_addr()}/dashboard?interval=500")
    expect(page.locator('[data-model="dash-model:3"] .roles')).to_have_text("current 75%")
    expect(page.locator('[data-model="dash-model:1"] .roles')).to_have_text("canary 25%")
    expect(page.locator('[data-model="dash-model:2"] .roles')).to_have_text("shadow")
    expect(page.locator('[data-model="broken-model:1"] .roles')).to_have_text("current")
    expect(page.locator('[data-model="dash-model:1"] .badge.canary')).to_be_visible()
    screenshot(page, "dashboard-traffic.png", tmp_path)

    cluster.rollback("dash-model")  # back to version 3 alone: the page follows
    expect(page.locator('[data-model="dash-model:1"] .roles')).to_have_text("")
    expect(page.locator('[data-model="dash-model:2"] .roles')).to_have_text("")
    expect(page.locator('[data-model="dash-model:3"] .roles')).to_have_text("current")


def test_actions_need_the_token_when_the_cluster_has_one(cluster, page, helpers, tmp_path):
    wait_until = helpers.wait_until
    cm = cluster.cm
    config = json.loads(cm.config_path.read_text())
    config["management_token"] = TOKEN
    config["require_management_token"] = True  # on loopback too
    cm.stop_all(graceful=True, keep_state=True)
    cm.config_path.write_text(json.dumps(config))
    cluster.connect()  # restarts the server process, now with a token, and its replicas
    assert cm.management_token == TOKEN

    page.goto(f"http://{cm.get_admin_addr()}/dashboard?interval=500")
    expect(page.locator("#auth-needed")).to_be_visible()
    expect(page.locator("#status")).to_have_text("token needed")
    page.locator("#token").fill("wrong")
    page.locator("#token-form button").click()
    expect(page.locator("#status")).to_have_text("token needed")
    page.locator("#token").fill(TOKEN)
    page.locator("#token-form button").click()
    expect(page.locator("#status")).to_contain_text("live", timeout=10_000)
    expect(page.locator("#auth-needed")).to_be_hidden()

    version = cluster.get_current_model_version("dash-model")
    target = "2" if version == "1" else "1"
    page.locator(f'[data-set-version="dash-model:{target}"]').click()
    wait_until(lambda: cluster.get_current_model_version("dash-model") == target, 30,
               f"version {target} current")
    screenshot(page, "dashboard-token.png", tmp_path)
