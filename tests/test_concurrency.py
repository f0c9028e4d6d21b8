"""Concurrent clients against one uvicorn worker on SQLite: no lost update, no 5xx, no stall."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

COUNTER_MODELS = [
    {
        "name": "Counter",
        "fields": {
            "name": "string(40) required unique",
            "value": "integer required default=0",
        },
    }
]
MAX_ATTEMPTS = 400


@pytest.fixture(scope="module")
def counter_project(render):
    return render({"models": COUNTER_MODELS}, name="counters", seed=False)


def increment(client: httpx.Client, url: str) -> tuple[int, list[int]]:
    """Add one to the counter with If-Match, retrying when another client got there first."""
    statuses = []
    for attempt in range(MAX_ATTEMPTS):
        current = client.get(url)
        statuses.append(current.status_code)
        value = current.json()["value"]
        updated = client.patch(
            url,
            json={"value": value + 1},
            headers={"If-Match": current.headers["ETag"]},
        )
        statuses.append(updated.status_code)
        if updated.status_code == 200:
            return attempt + 1, statuses
    raise AssertionError(f"no successful update in {MAX_ATTEMPTS} attempts")


def test_read_then_write_increments_lose_nothing(
    counter_project, project_python, server
):
    threads, per_thread = 16, 15
    backend = counter_project / "backend"
    with server(project_python, backend) as base_url:
        created = httpx.post(f"{base_url}/counters", json={"name": "hits"})
        assert created.status_code == 201, created.text
        url = f"{base_url}/counters/{created.json()['id']}"
        lock = threading.Lock()
        statuses: list[int] = []

        def worker() -> int:
            with httpx.Client(timeout=60) as client:
                successes = 0
                for _ in range(per_thread):
                    _, seen = increment(client, url)
                    with lock:
                        statuses.extend(seen)
                    successes += 1
                return successes

        with ThreadPoolExecutor(max_workers=threads) as pool:
            successes = sum(pool.map(lambda _: worker(), range(threads)))
        final = httpx.get(url).json()["value"]

    assert successes == threads * per_thread
    assert final == threads * per_thread
    assert [code for code in statuses if code >= 500] == []
    assert set(statuses) <= {200, 412}


def test_sixty_four_clients_all_answered(counter_project, project_python, server):
    clients, requests_each = 64, 8
    backend = counter_project / "backend"
    with server(project_python, backend) as base_url:
        before = httpx.get(f"{base_url}/counters", params={"limit": 1}).json()["total"]
        barrier = threading.Barrier(clients)

        def worker(number: int) -> list[int]:
            codes = []
            with httpx.Client(base_url=base_url, timeout=60) as client:
                barrier.wait(timeout=30)
                for request in range(requests_each):
                    if request % 2 == 0:
                        response = client.post(
                            "/counters", json={"name": f"c{number}-{request}"}
                        )
                    else:
                        response = client.get("/counters", params={"limit": 20})
                    codes.append(response.status_code)
            return codes

        with ThreadPoolExecutor(max_workers=clients) as pool:
            codes = [
                code for result in pool.map(worker, range(clients)) for code in result
            ]
        total = httpx.get(f"{base_url}/counters", params={"limit": 1}).json()["total"]

    assert len(codes) == clients * requests_each
    assert codes.count(201) == clients * requests_each // 2
    assert codes.count(200) == clients * requests_each // 2
    assert total == before + clients * requests_each // 2
