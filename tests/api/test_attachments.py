"""Image uploads (API.md, attachments): the type from the bytes, the size limit, owner-only
reads, deletion, and hostile multipart bodies; through the running API."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from core.attachments import sniff_image_type
from core.config import settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)
GIF = b"GIF89a" + bytes(32)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32)


async def upload(client, user, data: bytes, name: str = "photo.png", declared: str = "image/png"):
    return await client.post(
        "/v1/attachments", headers=user.headers, files={"file": (name, data, declared)}
    )


@pytest.mark.parametrize(
    ("data", "mime_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
async def test_upload_sniffs_the_type_from_the_bytes(client, make_user, data, mime_type):
    user = make_user()
    # The name and the declared type say otherwise: only the bytes count.
    response = await upload(client, user, data, name="x.txt", declared="text/plain")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mime_type"] == mime_type and body["size"] == len(data)
    assert set(body) == {"id", "mime_type", "size", "created_at"}

    fetched = await client.get(f"/v1/attachments/{body['id']}", headers=user.headers)
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["content-type"] == mime_type
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert fetched.headers["cache-control"].startswith("private, max-age=")
    etag = fetched.headers["etag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    again = await client.get(
        f"/v1/attachments/{body['id']}", headers={**user.headers, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    "data",
    [b"just some text, honestly", b"", b"<svg xmlns='http://www.w3.org/2000/svg'/>", PNG[:4]],
)
async def test_a_file_that_is_not_an_image_is_refused(client, make_user, data):
    user = make_user()
    response = await upload(client, user, data, name="fake.png", declared="image/png")
    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_content"


async def test_the_size_limit(client, make_user):
    user = make_user()
    limit = settings.attachment_max_bytes
    at_limit = PNG + bytes(limit - len(PNG))
    assert (await upload(client, user, at_limit)).status_code == 201
    # Over by one byte: the body fits the edge's limit, the route refuses the file.
    over = await upload(client, user, at_limit + b"\x00")
    assert over.status_code == 413
    assert over.json()["code"] == "payload_too_large"
    # Far over: the edge refuses the body before reading it whole.
    far = await upload(client, user, at_limit + bytes(256 * 1024))
    assert far.status_code == 413
    assert far.json()["code"] == "payload_too_large"


async def test_other_users_images_are_not_found(client, make_user):
    owner, other = make_user(), make_user()
    image_id = (await upload(client, owner, PNG)).json()["id"]
    for method in ("GET", "DELETE"):
        answer = await client.request(method, f"/v1/attachments/{image_id}", headers=other.headers)
        assert answer.status_code == 404
        assert answer.json()["code"] == "not_found"
    missing = await client.get(f"/v1/attachments/{uuid.uuid4()}", headers=owner.headers)
    assert missing.status_code == 404
    unauthenticated = await client.get(f"/v1/attachments/{image_id}")
    assert unauthenticated.status_code == 401
    mine = await client.get(f"/v1/attachments/{image_id}", headers=owner.headers)
    assert mine.status_code == 200


async def test_delete(client, make_user):
    user = make_user()
    image_id = (await upload(client, user, GIF)).json()["id"]
    deleted = await client.delete(f"/v1/attachments/{image_id}", headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/attachments/{image_id}", headers=user.headers)
    assert gone.status_code == 404
    again = await client.delete(f"/v1/attachments/{image_id}", headers=user.headers)
    assert again.status_code == 404


async def test_hostile_multipart_bodies(client, make_user):
    user = make_user()
    # The file name is never read or stored: a NUL in it changes nothing.
    named = await upload(client, user, PNG, name="a\x00b.png")
    assert named.status_code == 201, named.text
    missing = await client.post(
        "/v1/attachments", headers=user.headers, files={"other": ("a.png", PNG, "image/png")}
    )
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"][-1] == "file"
    two = await client.post(
        "/v1/attachments",
        headers=user.headers,
        files=[("file", ("a.png", PNG, "image/png")), ("file", ("b.png", PNG, "image/png"))],
    )
    assert two.status_code == 422
    assert isinstance(two.json()["detail"], list)
    as_json = await client.post("/v1/attachments", headers=user.headers, json={"file": "x"})
    assert as_json.status_code == 422
    broken = await client.post(
        "/v1/attachments",
        headers={**user.headers, "Content-Type": "multipart/form-data; boundary=zzz"},
        content=b'--zzz\r\nContent-Disposition: form-data; name="file"\r\n\r\nno end',
    )
    assert broken.status_code in (400, 422)
    assert "code" in broken.json()


def test_sniffing_needs_the_whole_signature():
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WEBP") == "image/webp"
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff_image_type(b"GIF88a") is None
    assert sniff_image_type(b"\xff\xd8") is None
