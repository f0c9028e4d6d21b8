"""The admin page at /admin: login, a model's rows, and a row created and edited
in Debian's Chromium, driven headless by Playwright, then read back through the
JSON API.

Set UPDATE_SCREENSHOTS=1 to write the screenshot of the list page into the
template, where the generated README shows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from scripts.projects import clean_env
from tests.conftest import link_venv

# Debian's Chromium, unless CHROMIUM_PATH names another Chromium-based browser.
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
# Copier renders this file name, so only projects with the admin page get it.
SCREENSHOT = (
    Path(__file__).resolve().parent.parent
    / "template"
    / "docs"
    / "{% if admin_page %}admin-page.png{% endif %}"
)
# Chromium's background services call Google's servers. The test needs none
# of them, and on a closed network they only add failed connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def env_value(backend: Path, name: str) -> str:
    for line in (backend / ".env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} is not in backend/.env")


@pytest.fixture(scope="module")
def shop(render, project_python):
    project = render({"project_slug": "admin-shop"}, name="admin-shop")
    link_venv(project, project_python)
    return project


def test_password_lives_only_in_env(shop):
    backend = shop / "backend"
    password = env_value(backend, "ADMIN_PASSWORD")
    secret_key = env_value(backend, "ADMIN_SECRET_KEY")
    assert len(password) == 24
    assert len(secret_key) == 43
    assert (backend / ".env").stat().st_mode & 0o777 == 0o600
    for path in shop.rglob("*"):
        if not path.is_file() or ".venv" in path.parts or path.name == ".env":
            continue
        if path.suffix in {".sqlite", ".pyc"} or path.name.endswith(("-wal", "-shm")):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        assert password not in text, path
        assert secret_key not in text, path


def test_every_page_needs_the_login(shop, project_python, server):
    backend = shop / "backend"
    with server(project_python, backend) as base_url:
        with httpx.Client(base_url=base_url) as client:
            for page in ("/admin/", "/admin/author/list", "/admin/book/create"):
                response = client.get(page)
                assert response.status_code == 302, page
                assert response.headers["location"] == f"{base_url}/admin/login"
            refused = client.post(
                "/admin/login", data={"username": "admin", "password": "guess"}
            )
            assert refused.status_code == 400
            assert "Invalid credentials." in refused.text
            assert client.get("/admin/author/list").status_code == 302


def test_browser_login_list_create_edit(shop, project_python, server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), (
        f"{CHROMIUM} not found; install Debian's chromium package as root "
        "(scripts/test does this itself when it runs as root)"
    )

    backend = shop / "backend"
    password = env_value(backend, "ADMIN_PASSWORD")
    with (
        server(project_python, backend) as base_url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base_url}/admin/author/list")
            assert page.url == f"{base_url}/admin/login"
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base_url}/admin/")

            authors = httpx.get(f"{base_url}/authors").json()
            page.goto(f"{base_url}/admin/author/list")
            rows = page.locator("table tbody tr")
            assert rows.count() == authors["total"]
            for author in authors["items"]:
                assert page.get_by_text(author["name"], exact=True).count() == 1
            shot = tmp_path / "admin-page.png"
            page.screenshot(path=str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("UPDATE_SCREENSHOTS") == "1":
                SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)

            # A book's author is picked by name, not by Python's object repr.
            page.goto(f"{base_url}/admin/book/create")
            options = page.locator("select[name=author] option").all_inner_texts()
            first = authors["items"][0]
            assert f"{first['name']} (Author {first['id']})" in options

            page.goto(f"{base_url}/admin/author/create")
            page.fill("input[name=name]", "Octavia Butler")
            page.click("input[type=submit][value=Save]")
            page.wait_for_url(f"{base_url}/admin/author/list")
            created = httpx.get(
                f"{base_url}/authors", params={"name": "Octavia Butler"}
            ).json()
            assert [item["name"] for item in created["items"]] == ["Octavia Butler"]
            author_id = created["items"][0]["id"]

            page.goto(f"{base_url}/admin/author/edit/{author_id}")
            page.fill("input[name=name]", "Octavia E. Butler")
            page.click("input[type=submit][value=Save]")
            page.wait_for_url(f"{base_url}/admin/author/list")
            edited = httpx.get(f"{base_url}/authors/{author_id}")
            assert edited.status_code == 200
            assert edited.json()["name"] == "Octavia E. Butler"
        finally:
            browser.close()


def test_admin_lists_later_model(render, project_python, server):
    project = render({"project_slug": "admin-later"}, name="admin-later")
    link_venv(project, project_python)
    backend = project / "backend"
    for args in (
        ["create-model", "--name", "Shelf", "--field", "label: string(40) required"],
        ["create-crud", "--model", "Shelf"],
        ["migrate", "-m", "add shelf"],
    ):
        done = subprocess.run(
            [".venv/bin/python", "manage.py", *args],
            cwd=backend,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    password = env_value(backend, "ADMIN_PASSWORD")
    with (
        server(project_python, backend) as base_url,
        httpx.Client(base_url=base_url) as client,
    ):
        created = httpx.post(f"{base_url}/shelves", json={"label": "top shelf"})
        assert created.status_code == 201, created.text
        logged_in = client.post(
            "/admin/login", data={"username": "admin", "password": password}
        )
        assert logged_in.status_code == 302
        listed = client.get("/admin/shelf/list")
        assert listed.status_code == 200
        assert "top shelf" in listed.text
        assert f'href="{base_url}/admin/shelf/list"' in listed.text


def test_admin_page_can_be_turned_off(render, project_python, server):
    project = render(
        {"project_slug": "no-admin", "admin_page": False}, name="no-admin", seed=False
    )
    link_venv(project, project_python)
    backend = project / "backend"
    assert not (backend / "admin.py").exists()
    assert "ADMIN_PASSWORD" not in (backend / ".env").read_text()
    assert "mount_admin" not in (backend / "main.py").read_text()
    with server(project_python, backend) as base_url:
        assert httpx.get(f"{base_url}/admin/login").status_code == 404


@pytest.mark.postgres
def test_admin_page_on_a_postgresql_schema(
    render, project_python, server, postgres_server
):
    project = render({"project_slug": "admin-on-pg"}, name="admin-on-pg")
    link_venv(project, project_python)
    backend = project / "backend"
    moved = subprocess.run(
        [".venv/bin/python", "manage.py", "upgrade", "--to", "postgres_schema"],
        cwd=backend,
        env=clean_env(ADMIN_DATABASE_URL=postgres_server.admin_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert moved.returncode == 0, moved.stderr
    password = env_value(backend, "ADMIN_PASSWORD")
    try:
        with (
            server(project_python, backend) as base_url,
            httpx.Client(base_url=base_url) as client,
        ):
            authors = httpx.get(f"{base_url}/authors").json()["items"]
            assert client.get("/admin/author/list").status_code == 302
            client.post(
                "/admin/login", data={"username": "admin", "password": password}
            )
            listed = client.get("/admin/author/list")
            assert listed.status_code == 200
            for author in authors:
                assert author["name"] in listed.text
            created = client.post(
                "/admin/author/create", data={"name": "Grace Hopper", "save": "Save"}
            )
            assert created.status_code == 302
            found = httpx.get(f"{base_url}/authors", params={"name": "Grace Hopper"})
            assert [item["name"] for item in found.json()["items"]] == ["Grace Hopper"]
            assert found.json()["items"][0]["id"] == max(a["id"] for a in authors) + 1
    finally:
        subprocess.run(
            [".venv/bin/python", "manage.py", "deprovision", "--yes"],
            cwd=backend,
            env=clean_env(ADMIN_DATABASE_URL=postgres_server.admin_url),
            capture_output=True,
            timeout=120,
        )
