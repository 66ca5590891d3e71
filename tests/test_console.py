"""The console in a real browser: Debian's Chromium, driven by Playwright, against real ``searchd serve`` processes.

Every page records the requests it makes; a test fails if one went anywhere but the searchd it was opened on.
In CI (``CI`` set, or ``SEARCHD_REQUIRE_BROWSER=1`` as .ci/run exports) a missing Chromium fails these tests;
elsewhere they are skipped, with the command that enables them.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from scripts.console_screenshots import CHROMIUM, launch
from tests.conftest import MULTIMODAL
from tests.fakes import FakeJina
from tests.test_e2e_server import Server, StartServer, child_env, free_port, searchd_module, wait_ready
from tests.test_e2e_server import start_server as start_server  # noqa: PLC0414  (re-exported: the fixture, used by name)
from tests.test_reload_e2e import jina as jina  # noqa: PLC0414  (re-exported: the fixture, used by name)

OBJECTS = [json.loads(line) for line in (MULTIMODAL / "objects.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
WAIT_MS = 30_000  # a bound on every wait in the page, not a performance expectation
RESULTS = re.compile(r"^\d+ results?$")
ADMIN_KEY = "console-admin-key-0123456789"
READ_KEY = "console-read-key-0123456789"

Page = Any  # playwright.sync_api.Page (playwright is imported only when a browser is there)
OpenConsole = Callable[[str], Page]


def browser_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("SEARCHD_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem is not None:
        if browser_required():
            pytest.fail(f"{problem}: the console's browser tests must run here (CI / SEARCHD_REQUIRE_BROWSER=1); install it with: apt-get install -y chromium")
        pytest.skip(f"{problem}: to run the console's browser tests, install Debian's Chromium (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console(browser: Any) -> Iterator[OpenConsole]:
    """Open the console of a server in a fresh browser context (its own sessionStorage); check where each page went."""
    contexts: list[Any] = []
    requested: list[tuple[str, str]] = []  # (origin allowed, URL requested)

    def open_console(url: str) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        origin = re.match(r"^https?://[^/]+", url)
        assert origin is not None, url
        context.on("request", lambda request: requested.append((origin.group(0), request.url)))
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        return page

    yield open_console
    for context in contexts:
        context.close()
    foreign = [u for origin, u in requested if not (u == origin or u.startswith((origin + "/", "data:")))]
    assert requested and foreign == [], foreign


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The multimodal example served with its objects, shared by the tests that only read."""
    directory = tmp_path_factory.mktemp("console-example")
    out, err = directory / "server.stdout", directory / "server.stderr"
    files: list[IO[bytes]] = [open(out, "wb"), open(err, "wb")]  # noqa: SIM115 (the server process holds them)
    args = [*searchd_module(), "serve", str(MULTIMODAL), "--data", str(directory / "data"), "--host", "127.0.0.1"]
    args += ["--port", str(free_port()), "--grpc-port", "0", "--load", str(MULTIMODAL / "objects.jsonl")]
    process = subprocess.Popen(args, stdout=files[0], stderr=files[1], stdin=subprocess.DEVNULL, cwd=directory, env=child_env())
    server = Server(process, int(args[args.index("--port") + 1]), out, err, files)
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()


def by_title(title: str) -> dict[str, Any]:
    return next(o for o in OBJECTS if o["properties"]["title"] == title)


def direct_ids(server: Server, query: str, headers: dict[str, str] | None = None) -> list[str]:
    response = httpx.post(f"{server.url}/v1/graphql", json={"query": query}, headers=headers, trust_env=False, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return [hit["_additional"]["id"] for hit in body["data"]["Get"]["Artwork"]]


def run_search(page: Page) -> list[str]:
    """Press Search and wait for the cards; their object ids, in order."""
    with page.expect_response("**/v1/graphql"):
        page.click("#search-run")
    page.wait_for_function("re => new RegExp(re).test(document.getElementById('search-status').textContent)", arg=RESULTS.pattern)
    ids: list[str] = page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.id)")
    return ids


def add_condition(page: Page, path: str, operator: str, value: str) -> None:
    """Add a row to the where builder and fill it in (choosing the property draws the row anew)."""
    page.click("#where-add")
    row = ".condition:last-child"
    page.select_option(f"{row} .where-path", path)
    page.select_option(f"{row} .where-operator", operator)
    page.fill(f"{row} .where-value", value)


def set_range(page: Page, selector: str, value: str) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", value)


# -- search ---------------------------------------------------------------------------------------


def test_near_image_returns_that_image_first_as_a_decoded_thumbnail(example: Server, console: OpenConsole, tmp_path: Path) -> None:
    wanted = by_title("Green triangle on white")
    picture = tmp_path / "green-triangle.png"
    picture.write_bytes(base64.b64decode(wanted["properties"]["image"]))
    page = console(f"{example.url}/console#search")
    page.set_input_files("#search-image", str(picture))
    page.wait_for_selector(".picked img")
    assert page.is_checked("input[name=kind][value=nearImage]")
    with page.expect_request("**/v1/graphql") as sent:
        ids = run_search(page)
    body = sent.value.post_data_json
    assert body["variables"] == {"image": wanted["properties"]["image"]}
    assert "nearImage: {image: $image}" in body["query"]
    assert ids[0] == wanted["id"]
    first = page.locator("#results .card").first
    size = first.locator("img.thumb").evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
    assert size == [48, 48]  # the example draws 48 × 48 pictures
    assert first.locator("h3").inner_text() == "Green triangle on white"
    # Each card opens the whole object.
    first.locator("button.open").click()
    page.wait_for_selector("#object-body table.object img.thumb")
    cells = page.eval_on_selector_all("#object-body table.object tr", "rows => rows.map(r => r.innerText.split('\\t')[0])")
    assert cells[:5] == ["title", "description", "image", "year", "palette"] and set(cells[5:]) == {"multimodal", "words", "external"}
    page.click("#object-dialog button.close")
    page.wait_for_selector("#object-dialog", state="hidden")

    # "More like this" searches by that object: it comes first, at distance 0.
    first.locator("button.like").click()
    assert page.is_checked("input[name=kind][value=nearObject]")
    page.wait_for_function("id => document.querySelector('#results .card')?.dataset.id === id && !document.getElementById('query-doc').textContent.includes('nearImage')", arg=wanted["id"])
    document = page.inner_text("#query-doc")
    assert f'nearObject: {{id: "{wanted["id"]}"}}' in document
    assert page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.id)") == direct_ids(example, document)
    assert page.inner_text("#results .card .metric").startswith("distance 0.0000")


def test_phone_width_and_dark_scheme(example: Server, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{example.url}/console#search")
        page.fill("#search-text", "green")
        ids = run_search(page)
        assert len(ids) == 10
        # Nothing wider than the phone: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        widths = page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.getBoundingClientRect().right)")
        assert max(widths) <= 390
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 24, 28)"  # --bg of the dark scheme
        # Arrow keys move between the result cards; Enter opens one.
        page.focus("#results .card")
        page.keyboard.press("ArrowDown")
        assert page.evaluate("document.activeElement.dataset.id") == ids[1]
        page.keyboard.press("Enter")
        page.wait_for_selector("#object-dialog[open]")
        assert page.inner_text("#object-title") == f"Artwork {ids[1]}"
        page.keyboard.press("Escape")
        page.wait_for_selector("#object-dialog", state="hidden")
        # A limit the server would refuse is caught before anything is sent.
        page.fill("#search-limit", "10001")
        page.dispatch_event("#search-limit", "change")
        page.click("#search-run")
        assert page.inner_text("#search-status") == "limit must be a whole number from 1 to 10000 (server.limits.queryLimitMax)"
    finally:
        context.close()


def test_near_text_bm25_and_hybrid_show_the_ids_of_the_same_graphql_sent_directly(example: Server, console: OpenConsole) -> None:
    page = console(f"{example.url}/console#search")
    cases = [
        ("nearText", "red circle", 'nearText: {concepts: ["red circle"]}'),
        ("bm25", "blue square", 'bm25: {query: "blue square"}'),
        ("hybrid", "yellow triangle", 'hybrid: {query: "yellow triangle", alpha: 0.3, fusionType: rankedFusion, targetVectors: ["words"]}'),
    ]
    for kind, text, argument in cases:
        page.check(f"input[name=kind][value={kind}]")
        page.fill("#search-text", text)
        if kind == "hybrid":
            set_range(page, "#search-alpha", "0.3")
            page.select_option("#search-fusion", "rankedFusion")
            page.check("input[name=target][value=words]")
        ids = run_search(page)
        document = page.inner_text("#query-doc")
        assert argument in document, document
        assert len(ids) == 10 and ids == direct_ids(example, document), (kind, document)
        if kind == "bm25":  # both blue squares carry both words: they lead, in either order
            assert set(ids[:2]) == {by_title("Blue square on black")["id"], by_title("Blue square on white")["id"]}
        if kind != "nearText":  # how each score came about
            assert "BM25F_" in (page.text_content("#results .card:first-child details.explain pre") or "")


def test_a_where_filter_narrows_the_results(example: Server, console: OpenConsole) -> None:
    page = console(f"{example.url}/console#search")
    page.check("input[name=kind][value=bm25]")
    page.fill("#search-text", "red")
    page.fill("#search-limit", "24")
    page.dispatch_event("#search-limit", "change")
    unfiltered = run_search(page)
    reds = [o for o in OBJECTS if "red" in o["properties"]["palette"]]
    assert sorted(unfiltered) == sorted(o["id"] for o in reds)

    add_condition(page, "palette", "ContainsAny", "black")
    add_condition(page, "year", "GreaterThan", "1995")
    filtered = run_search(page)
    document = page.inner_text("#query-doc")
    clause = 'where: {operator: And, operands: [{path: ["palette"], operator: ContainsAny, valueText: ["black"]}, {path: ["year"], operator: GreaterThan, valueInt: 1995}]}'
    assert clause in document, document
    expected = [o["id"] for o in reds if "black" in o["properties"]["palette"] and o["properties"]["year"] > 1995]
    assert 0 < len(filtered) < len(unfiltered)
    assert sorted(filtered) == sorted(expected)
    assert filtered == direct_ids(example, document)


def test_the_query_copied_as_curl_and_as_python_gives_the_same_ids(example: Server, console: OpenConsole, tmp_path: Path) -> None:
    page = console(f"{example.url}/console#search")
    page.fill("#search-text", "yellow square")
    add_condition(page, "year", "LessThan", "2010")
    ids = run_search(page)
    assert len(ids) == 10 and ids == direct_ids(example, page.inner_text("#query-doc"))

    page.select_option("#snippet-format", "curl")
    curl = page.inner_text("#query-doc")
    assert curl.startswith(f"curl -s {example.url}/v1/graphql ")
    ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True)
    assert [hit["_additional"]["id"] for hit in json.loads(ran.stdout)["data"]["Get"]["Artwork"]] == ids

    page.select_option("#snippet-format", "python")
    assert "grpc_port=50051," in page.inner_text("#query-doc")  # the config's port (the example keeps the default)
    script = tmp_path / "query.py"
    script.write_text(page.inner_text("#query-doc"), encoding="utf-8")
    ran = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=120, env=child_env())
    assert ran.returncode == 0, ran.stderr
    printed = [ast.literal_eval(line) for line in ran.stdout.splitlines()]
    assert [hit["_additional"]["id"] for hit in printed] == ids


# -- the GraphQL editor ---------------------------------------------------------------------------


def test_the_editor_shows_a_syntax_error_at_its_line(example: Server, console: OpenConsole) -> None:
    page = console(f"{example.url}/console")
    page.wait_for_selector("article.collection")
    page.keyboard.press("/")  # "/" jumps to the search box
    page.wait_for_function("() => document.activeElement?.id === 'search-text'")
    assert page.evaluate("location.hash") == "#search"
    page.keyboard.press("Alt+3")  # the keyboard reaches every view, from a text box too
    page.wait_for_selector("#gql-editor")
    assert page.evaluate("location.hash") == "#graphql"
    broken = "{\n  Get {\n    Artwork(limit: ) {\n      title\n    }\n  }\n}"
    answer = httpx.post(f"{example.url}/v1/graphql", json={"query": broken}, trust_env=False).json()
    (error,) = answer["errors"]
    assert error["locations"][0]["line"] == 3
    page.fill("#gql-editor", broken)
    page.click("#gql-run")
    page.wait_for_selector(".gutter li.error")
    assert page.eval_on_selector_all(".gutter li.error", "items => items.map(i => i.dataset.line)") == ["3"]
    column = error["locations"][0]["column"]
    assert page.inner_text("#gql-errors li") == f"Line 3, column {column}: {error['message']}"

    # Names complete from introspection: Tab takes the first.
    page.fill("#gql-editor", "{ Get { Artw")
    page.wait_for_selector("#gql-suggestions li")
    assert page.inner_text("#gql-suggestions li") == "Artwork"
    page.press("#gql-editor", "Tab")
    assert page.input_value("#gql-editor") == "{ Get { Artwork"
    page.type("#gql-editor", "(limit: 1) { title } } }")
    page.press("#gql-editor", "Control+Enter")
    page.wait_for_function("() => document.getElementById('gql-result').textContent.includes('\"title\"')")
    assert page.eval_on_selector_all(".gutter li.error", "items => items.length") == 0
    direct = httpx.post(f"{example.url}/v1/graphql", json={"query": "{ Get { Artwork(limit: 1) { title } } }"}, trust_env=False).json()
    assert json.loads(page.inner_text("#gql-result")) == direct["data"]
    assert len(direct["data"]["Get"]["Artwork"]) == 1


# -- reloads --------------------------------------------------------------------------------------


NEW_VECTOR = """\
      # Added while serving: the console shows its re-vectorization.
      jina:
        vectorizer: {module: text2vec-jinaai, model: jina-embeddings-v3, dimensions: 64, textFields: [title]}
        index: {type: flat, distance: cosine}
"""


def copy_example(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(MULTIMODAL, config, ignore=shutil.ignore_patterns("*.py", "*.jsonl"))
    return config


def test_adding_a_vector_shows_a_progress_bar_then_the_vector(tmp_path: Path, start_server: StartServer, console: OpenConsole, jina: tuple[FakeJina, str]) -> None:
    fake, url = jina
    config = copy_example(tmp_path)
    settings = config / "searchd.yaml"
    # maxRetries 0 and a long timeout: the held request is the only one, until the test lets it go.
    settings.write_text(
        settings.read_text(encoding="utf-8") + f'  text2vec-jinaai: {{baseURL: "{url}", maxRetries: 0, timeoutSeconds: 120}}\n', encoding="utf-8"
    )
    server = start_server(config, tmp_path / "data", "--load", str(MULTIMODAL / "objects.jsonl"))
    page = console(f"{server.url}/console#config")
    page.wait_for_selector("#revision")

    fake.hold(2, timeout=120)  # the rebuild sends one request at a time: it waits here until reset()
    artwork = config / "collections" / "artwork.yaml"
    artwork.write_text(artwork.read_text(encoding="utf-8") + NEW_VECTOR, encoding="utf-8")
    bar = page.wait_for_selector('.rebuild[data-target="Artwork.jina"][data-state="running"] progress')
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("0", "24")
    reload = page.inner_text('.last-reload[data-result="applied"] table.plan')
    assert "Artwork.vector jina\tnew vector (text2vec-jinaai, flat cosine)" in reload, reload
    # Until its vectors are in, the new vector is not served.
    page.click("nav a[data-view=collections]")
    page.wait_for_selector('article[data-collection="Artwork"] tr[data-vector="words"]')
    assert page.locator('tr[data-vector="jina"]').count() == 0
    page.click("nav a[data-view=config]")
    page.wait_for_selector('.rebuild[data-target="Artwork.jina"] progress')

    fake.reset()  # lets the held request go
    done = page.wait_for_selector('.rebuild[data-target="Artwork.jina"][data-state="done"] progress')
    assert done.get_attribute("value") == "24"
    assert "24 of 24 objects" in page.inner_text('.rebuild[data-target="Artwork.jina"]')
    page.click("nav a[data-view=collections]")
    row = page.wait_for_selector('article[data-collection="Artwork"] tr[data-vector="jina"]')
    assert row.inner_text().split("\t") == ["jina", "text2vec-jinaai", "jina-embeddings-v3", "64", "flat, cosine", "text"]
    assert server.logs().count("Traceback") == 0, server.logs()


def test_invalid_and_refused_reloads_are_shown_in_red_with_their_messages(tmp_path: Path, start_server: StartServer, console: OpenConsole) -> None:
    config = copy_example(tmp_path)
    server = start_server(config, tmp_path / "data", "--load", str(MULTIMODAL / "objects.jsonl"))
    page = console(f"{server.url}/console#config")
    page.wait_for_selector('.last-reload[data-result="applied"]')
    artwork = config / "collections" / "artwork.yaml"
    original = artwork.read_text(encoding="utf-8")
    edits = [
        ("invalid", original.replace("{name: year, type: INT}", "{name: year, type: INTEGER}")),
        ("refused", original.replace('      - {name: palette, type: "TEXT[]"}\n', "")),
    ]
    for result, text in edits:
        artwork.write_text(text, encoding="utf-8")
        page.wait_for_selector(f'.last-reload.failed[data-result="{result}"]')
        errors = httpx.get(f"{server.url}/v1/config/status", trust_env=False).json()["lastReload"]["errors"]
        assert errors, result
        shown = page.eval_on_selector_all(".last-reload.failed ul.errors li", "items => items.map(i => i.textContent)")
        assert shown == errors
        color = page.eval_on_selector(".last-reload.failed strong", "e => getComputedStyle(e).color")
        assert color == "rgb(179, 38, 30)"  # --error of the light scheme


# -- auth -----------------------------------------------------------------------------------------


def test_with_auth_no_key_shows_the_login_and_a_read_key_can_search(tmp_path: Path, start_server: StartServer, console: OpenConsole, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_ADMIN_KEY", ADMIN_KEY)  # read by the server child (child_env copies os.environ)
    monkeypatch.setenv("CONSOLE_READ_KEY", READ_KEY)
    config = copy_example(tmp_path)
    settings = config / "searchd.yaml"
    auth = '  auth:\n    apiKeys:\n      - {name: ops, key: "${CONSOLE_ADMIN_KEY}", role: admin}\n      - {name: viewer, key: "${CONSOLE_READ_KEY}", role: read}\n'
    settings.write_text(settings.read_text(encoding="utf-8").replace("  limits:\n", auth + "  limits:\n"), encoding="utf-8")
    server = start_server(config, tmp_path / "data", "--load", str(MULTIMODAL / "objects.jsonl"))

    statuses: dict[str, int] = {}
    page = console(f"{server.url}/console")
    page.on("response", lambda response: statuses.__setitem__(response.url.removeprefix(server.url), response.status))
    page.reload()  # the files again, now watched: 200, or 304 from the browser's revalidation (not 401)
    page.wait_for_selector("#login:not([hidden])")
    assert page.inner_text("#login-reason").startswith("this server needs an API key")
    assert page.locator("article.collection").count() == 0
    static = {path: status for path, status in statuses.items() if path.startswith("/console")}
    assert "/console/static/js/main.js" in static and set(static.values()) <= {200, 304}, statuses
    assert statuses["/v1/console/collections"] == 401

    page.fill("#login-key", "not-a-key")
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('login-reason').textContent.startsWith('the API key is not valid')")

    page.fill("#login-key", READ_KEY)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("article.collection")
    assert page.evaluate("[sessionStorage.getItem('searchd.apiKey'), localStorage.length]") == [READ_KEY, 0]

    page.click("nav a[data-view=search]")
    page.fill("#search-text", "green square")
    with page.expect_request("**/v1/graphql") as sent:
        ids = run_search(page)
    assert sent.value.headers["authorization"] == f"Bearer {READ_KEY}"
    assert ids and ids == direct_ids(server, page.inner_text("#query-doc"), {"Authorization": f"Bearer {READ_KEY}"})

    # A read key sees the config but cannot reload it.
    page.click("nav a[data-view=config]")
    page.click("#reload-now")
    message = page.wait_for_selector("span.error[role=status]")
    assert message.inner_text() == "key 'viewer' has the read role; POST /v1/config/reload needs an admin key"

    # The key is kept by this tab only: another tab asks again.
    other = page.context.new_page()
    other.goto(f"{server.url}/console")
    other.wait_for_selector("#login:not([hidden])")
    other.close()
    # "Forget key" drops it from this tab too.
    page.click("#forget-key")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("sessionStorage.length") == 0
