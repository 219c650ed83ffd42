"""Uploads (POST /assets) against the real API process: the type is read from the bytes,
equal bytes are stored once, a refused upload leaves no row and no file, runs may name
only assets that exist (of the right kind), and prune keeps what a kept run names."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import time
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support import ApiProcess, S3Server, WorkerProcess, patched_environment

LIMIT = 16_384  # ASSET_MAX_BYTES of this module's API
MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def env(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The suite's environment, with small uploads and a scratch folder of its own."""
    extra = {"ASSET_MAX_BYTES": str(LIMIT), "SCRATCH_DIR": str(tmp_path_factory.mktemp("scr"))}
    with patched_environment(extra):
        yield {**env, **extra}


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(timeout=30) as c:
        yield c


def png(color: tuple[int, int, int], size: int = 32, noise: bool = False) -> bytes:
    image = Image.new("RGB", (size, size), color)
    if noise:
        image = Image.frombytes("RGB", (size, size), hashlib.shake_256(bytes(color)).digest(
            size * size * 3))  # fmt: skip
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wav(seconds: float = 0.05) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(128 + (i % 16) for i in range(int(8000 * seconds))))
    return out.getvalue()


def upload(client: httpx.Client, data: bytes, name: str = "x.png", **kw: Any) -> httpx.Response:
    return client.post("/assets", files={"file": (name, data, "image/png")}, **kw)


async def _sql(statement: str, **params: object) -> list[dict[str, object]]:
    from sqlalchemy import text

    from db.engine import get_engine

    async with get_engine().begin() as conn:
        result = await conn.execute(text(statement), params)
        return [dict(r._mapping) for r in result] if result.returns_rows else []


def sql(statement: str, **params: object) -> list[dict[str, object]]:
    return asyncio.run(_sql(statement, **params))


def stored(env: dict[str, str]) -> list[Path]:
    """Every file under the store's assets folder."""
    return sorted(p for p in (Path(env["ARTIFACT_ROOT"]) / "assets").rglob("*") if p.is_file())


def leftovers(env: dict[str, str]) -> list[Path]:
    """Uploads received but never placed nor deleted."""
    return [p for p in Path(env["SCRATCH_DIR"]).rglob("*") if p.is_file()]


def assets_count() -> int:
    return int(sql("SELECT count(*) AS n FROM assets")[0]["n"])  # type: ignore[call-overload]


def test_a_png_is_stored_once_whatever_its_name(client: httpx.Client, env: dict[str, str]) -> None:
    data = png((200, 30, 30))
    first = upload(client, data, "red.png")
    assert first.status_code == 201, first.text
    body = first.json()
    assert {"id", "sha256", "kind", "size"} <= set(body)
    assert body["kind"] == "image" and body["media_type"] == "image/png"
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)
    uuid.UUID(body["id"])
    assert first.headers["location"] == f"/assets/{body['id']}"

    again = client.post("/assets", files={"file": ("other.bin", data, "application/zip")})
    assert again.status_code == 200 and again.json() == body
    files = [p for p in stored(env) if body["sha256"] in str(p)]
    assert len(files) == 1 and files[0].read_bytes() == data
    assert assets_count() == 1 and not leftovers(env)

    assert client.get(f"/assets/{body['id']}").json() == body
    assert body in client.get("/assets", params={"kind": "image"}).json()
    missing = client.get(f"/assets/{MISSING}")
    assert missing.status_code == 404 and missing.json()["code"] == "asset_not_found"
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get("/assets/not-a-uuid").status_code == 422


def test_bytes_of_another_type_get_415_and_leave_nothing(
    client: httpx.Client, env: dict[str, str]
) -> None:
    before, files = assets_count(), stored(env)
    exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(200)
    for data in (exe, b"just text, named .png", b""):
        refused = upload(client, data, "x.png")
        assert refused.status_code == 415, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "unsupported_media_type"
    as_json = client.post("/assets", json={"file": "x"})
    assert as_json.status_code == 415
    no_file = client.post("/assets", files={"other": ("a.png", png((1, 2, 3)), "image/png")})
    assert no_file.status_code == 422 and no_file.json()["errors"][0]["field"] == "file"
    assert assets_count() == before and stored(env) == files and not leftovers(env)


def test_bytes_that_only_start_like_media_get_415_and_leave_nothing(
    client: httpx.Client, env: dict[str, str]
) -> None:
    """The whole file must decode as what its first bytes claim: a run never fails at
    render time on an upload the API took (a 12 KB PNG of 100 million pixels included)."""
    before, files = assets_count(), stored(env)
    good = png((9, 9, 9))
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")
    cases = {
        "png then garbage": good[:40] + bytes(range(256)) * 4,
        "a png cut short": good[: len(good) // 2],
        "a decompression bomb": bomb.getvalue(),
        "a wav header then garbage": wav()[:12] + b"\xff" * 200,
    }
    for what, data in cases.items():
        refused = upload(client, data, "x.png")
        assert refused.status_code == 415, (what, refused.text)
        assert refused.json()["code"] == "unsupported_media_type"
        assert (
            "does not decode" in refused.json()["detail"]
            and "/" not in refused.json()["detail"].split(":", 1)[1]
        ), refused.json()["detail"]  # no server path in the answer
    assert assets_count() == before and stored(env) == files and not leftovers(env)


def test_an_upload_over_the_limit_gets_413_and_leaves_nothing(
    client: httpx.Client, env: dict[str, str]
) -> None:
    before, files = assets_count(), stored(env)
    big = png((9, 9, 9), size=80, noise=True)  # past the limit, within the body's slack
    assert LIMIT < len(big) < LIMIT + 60_000
    boundary = "reelflow-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )
    kinds = {"content-type": f"multipart/form-data; boundary={boundary}"}
    chunked = iter([body[i : i + 4096] for i in range(0, len(body), 4096)])
    huge = png((1, 1, 1), size=300, noise=True)  # past the body limit: refused unread
    for answer in (
        upload(client, big, "big.png"),
        client.post("/assets", content=chunked, headers=kinds),  # no Content-Length
        upload(client, huge, "huge.png"),
    ):
        assert answer.status_code == 413, answer.text
        assert answer.json()["code"] == "too_large"
        assert answer.headers["content-type"] == "application/problem+json"
    assert assets_count() == before and stored(env) == files and not leftovers(env)


def test_a_cross_site_form_cannot_upload(api: ApiProcess) -> None:
    files = {"file": ("x.png", png((5, 6, 7)), "image/png")}
    with httpx.Client(base_url=api.url, timeout=30) as browser:  # no X-Requested-With
        site = browser.post("/assets", files=files, headers={"Origin": "http://evil.example"})
        assert site.status_code == 403 and site.json()["code"] == "cross_origin_refused"
        fetch = browser.post("/assets", files=files, headers={"Sec-Fetch-Site": "cross-site"})
        assert fetch.status_code == 403
        form = browser.post("/assets", files=files)
        assert form.status_code == 415 and form.json()["code"] == "json_required"
        # A script with its token says it is no form (no token is set here: any will do).
        scripted = browser.post("/assets", files=files, headers={"Authorization": "Bearer x"})
        assert scripted.status_code == 201, scripted.text


def _runs() -> int:
    return int(sql("SELECT count(*) AS n FROM workflow_runs")[0]["n"])  # type: ignore[call-overload]


def test_runs_name_only_assets_that_exist_and_fit(client: httpx.Client) -> None:
    image = upload(client, png((20, 200, 20))).json()
    audio = upload(client, wav(), "tune.wav").json()
    assert audio["kind"] == "audio" and audio["media_type"] == "audio/x-wav"
    before = _runs()
    cases = [
        ({"images": [image["id"], MISSING]}, "images.1", "unknown_asset"),
        ({"music": MISSING}, "music", "unknown_asset"),
        ({"images": [audio["id"]]}, "images.0", "wrong_asset_kind"),
        ({"music": image["id"]}, "music", "wrong_asset_kind"),
    ]
    for params, field, code in cases:
        answer = client.post("/runs", json={"workflow": "short_video", "params": params})
        assert answer.status_code == 422, (params, answer.text)
        problem = answer.json()
        assert answer.headers["content-type"] == "application/problem+json"
        assert problem["code"] == code and problem["errors"][0]["field"] == field, problem
    assert _runs() == before


def test_a_step_reads_an_asset_through_its_context(
    client: httpx.Client, env: dict[str, str], tmp_path: Path
) -> None:
    """`ctx.asset(id)` is the asset as an input artifact; a vanished one fails for good."""
    from reelflow.errors import AssetVanished, PermanentStepError
    from reelflow.storage import artifact_store
    from steps import StepContext

    data = png((3, 33, 133))
    asset = upload(client, data).json()
    ctx = StepContext(run_id=uuid.uuid4(), key="render_scene[0]", attempt=1,
                      store=artifact_store(), scratch=tmp_path)  # fmt: skip
    found = ctx.asset(asset["id"])
    assert (found.sha256, found.size) == (asset["sha256"], asset["size"])
    assert found.key and found.key.startswith(f"assets/{asset['sha256']}/")
    assert ctx.local(found).read_bytes() == data
    with pytest.raises(AssetVanished):
        ctx.asset(MISSING)
    Path(found.path).unlink()  # the file lost behind the row's back
    with pytest.raises(PermanentStepError, match="file of asset"):
        ctx.asset(uuid.UUID(asset["id"]))
    # Uploading the same bytes again puts the lost file back, under the same asset.
    assert upload(client, data).json() == asset
    assert ctx.local(ctx.asset(asset["id"])).read_bytes() == data


def test_uploads_to_object_storage_are_stored_once_and_read_by_steps(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With ARTIFACT_URL=s3://...: the same bytes twice are one object, a refused upload
    puts none, and a step's context downloads the asset it names."""
    from reelflow.storage import artifact_store
    from steps import StepContext

    s3 = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    s3.start()
    bucket = s3.env("uploads")
    api = ApiProcess({**env, **bucket}, tmp_path_factory.mktemp("api-s3") / "api.log")
    try:
        api.start()
        with api.client(timeout=30) as client, patched_environment(bucket):
            data = png((77, 7, 177))
            first, again = upload(client, data), upload(client, data, "again.png")
            assert (first.status_code, again.status_code) == (201, 200), first.text
            assert again.json()["id"] == first.json()["id"]
            assert upload(client, b"MZ\x90\x00" + bytes(100)).status_code == 415
            store = artifact_store()
            assert store.keys("assets/") == [f"assets/{first.json()['sha256']}/asset.png"]
            ctx = StepContext(run_id=uuid.uuid4(), key="render_scene[0]", attempt=1,
                              store=store, scratch=tmp_path_factory.mktemp("step"))  # fmt: skip
            found = ctx.asset(first.json()["id"])
            assert found.path.startswith("s3://") and ctx.local(found).read_bytes() == data
    finally:
        api.stop()
        s3.stop()


def _cancelled_run(client: httpx.Client, params: dict[str, Any]) -> str:
    created = client.post("/runs", json={"workflow": "short_video", "params": params})
    assert created.status_code in (201, 202), created.text
    run_id = str(created.json()["id"])
    client.post(f"/runs/{run_id}/cancel")  # 409 if it failed first: stopped either way
    deadline = time.monotonic() + 60
    while True:
        run = client.get(f"/runs/{run_id}").json()
        busy = [s for s in run["steps"] if s["status"] in ("queued", "running", "retrying")]
        if run["status"] in ("cancelled", "failed", "succeeded") and not busy:
            return run_id
        assert time.monotonic() < deadline, run
        time.sleep(0.2)


def test_concurrent_uploads_of_one_file_make_one_asset(
    client: httpx.Client, env: dict[str, str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = png((123, 45, 67))
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: upload(client, data, f"{i}.png"), range(6)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    sha = answers[0].json()["sha256"]
    assert len([p for p in stored(env) if sha in str(p)]) == 1 and not leftovers(env)


def test_a_revision_names_only_assets_that_exist_and_fit(client: httpx.Client) -> None:
    image = upload(client, png((9, 99, 199))).json()
    audio = upload(client, wav(0.02), "r.wav").json()
    run_id = _cancelled_run(client, {})
    for patch, code in (({"images": [MISSING]}, "unknown_asset"),
                        ({"music": image["id"]}, "wrong_asset_kind")):  # fmt: skip
        body = {"params": patch, "reason": "new media"}
        refused = client.post(f"/runs/{run_id}/revise", json=body)
        assert refused.status_code == 422 and refused.json()["code"] == code, refused.text
    body = {"params": {"images": [image["id"]], "music": audio["id"]}, "reason": "new media"}
    plan = client.post(f"/runs/{run_id}/revise", params={"dry_run": "true"}, json=body)
    assert plan.status_code == 200, plan.text
    assert not sql("SELECT 1 FROM asset_refs WHERE run_id = :r", r=run_id)  # a dry run
    assert client.post(f"/runs/{run_id}/revise", json=body).status_code == 202
    client.post(f"/runs/{run_id}/cancel")
    refs = sql("SELECT asset_id FROM asset_refs WHERE run_id = :r", r=run_id)
    assert {str(r["asset_id"]) for r in refs} == {image["id"], audio["id"]}


def test_prune_keeps_an_asset_a_kept_run_names(client: httpx.Client, env: dict[str, str]) -> None:
    used = upload(client, png((40, 40, 220))).json()
    unused = upload(client, wav(0.08), "old.wav").json()
    run_id = _cancelled_run(client, {"images": [used["id"]], "music": None})
    sql(
        "UPDATE assets SET created_at = now() - interval '2 days' WHERE id IN (:a, :b)",
        a=used["id"], b=unused["id"],
    )  # fmt: skip

    dry = client.post("/admin/prune", params={"older_than": "1d"})
    assert dry.status_code == 200 and dry.json()["assets"] == 1, dry.text
    done = client.post("/admin/prune", params={"older_than": "1d", "dry_run": "false"})
    assert done.status_code == 200 and done.json()["assets"] == 1, done.text
    assert client.get(f"/assets/{unused['id']}").status_code == 404
    assert not [p for p in stored(env) if unused["sha256"] in str(p)]
    assert client.get(f"/assets/{used['id']}").status_code == 200
    assert [p for p in stored(env) if used["sha256"] in str(p)]
    assert client.get(f"/runs/{run_id}").status_code == 200

    # The run goes (it finished long ago): then nothing names the asset, and it goes too.
    sql("UPDATE workflow_runs SET finished_at = now() - interval '2 days' WHERE id = :r",
        r=run_id)  # fmt: skip
    done = client.post("/admin/prune", params={"older_than": "1d", "dry_run": "false"})
    assert done.json()["runs"] == 1 and done.json()["assets"] == 1, done.text
    assert client.get(f"/assets/{used['id']}").status_code == 404
    assert not [p for p in stored(env) if used["sha256"] in str(p)]
    # The same bytes again are a new asset, stored again.
    back = upload(client, png((40, 40, 220)))
    assert back.status_code == 201 and back.json()["id"] != used["id"]
    assert [p for p in stored(env) if used["sha256"] in str(p)]


def test_the_start_form_uploads_and_names_the_assets(
    api: ApiProcess, client: httpx.Client, tmp_path: Path
) -> None:
    """In a real Chromium: files picked on short_video's start form are uploaded, their ids
    go into the run's params, and an audio file picked as an image is refused in words."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is a test extra")
    files = {"a.png": png((1, 90, 1)), "b.png": png((1, 1, 90)), "t.wav": wav(0.03)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: (
                    msg.type == "error"
                    and not msg.text.startswith("Failed to load resource")
                    and errors.append(msg.text)
                ),
            )  # a CSP violation
            page.goto(f"{api.url}/ui/new?workflow=short_video")
            page.locator("#p-images").set_input_files([tmp_path / "a.png", tmp_path / "b.png"])
            sync_api.expect(page.locator("#p-images-assets li[data-asset-id]")).to_have_count(2)
            page.locator("#p-music").set_input_files(tmp_path / "a.png")
            sync_api.expect(page.locator("#p-music-error")).to_contain_text("not audio")
            page.locator("#p-music").set_input_files(tmp_path / "t.wav")
            sync_api.expect(page.locator("#p-music-assets li[data-asset-id]")).to_have_count(1)
            page.get_by_role("button", name="Start run").click()
            page.wait_for_url("**/ui/runs/*")
            run_id = page.url.rsplit("/", 1)[1]
        finally:
            browser.close()
    assert not errors, errors
    run = client.get(f"/runs/{run_id}").json()
    client.post(f"/runs/{run_id}/cancel")
    by_sha = {a["sha256"]: a["id"] for a in client.get("/assets").json()}
    wanted = [by_sha[hashlib.sha256(png(c)).hexdigest()] for c in ((1, 90, 1), (1, 1, 90))]
    assert run["params"]["images"] == wanted
    assert run["params"]["music"] == by_sha[hashlib.sha256(wav(0.03)).hexdigest()]
