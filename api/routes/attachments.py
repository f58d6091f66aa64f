"""Images for conversation turns: upload, fetch (owner only) and delete."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile, status
from fastapi.responses import Response

from api.deps import CurrentUser, SessionDep
from api.schemas.attachments import AttachmentOut
from core.attachments import SNIFF_BYTES, attachment_store, sniff_image_type
from core.config import settings
from core.errors import AppError, NotFound
from models import Attachment

router = APIRouter(prefix="/v1/attachments", tags=["attachments"])

_CHUNK_BYTES = 256 * 1024
# An image never changes under its id: browsers may keep it, but only for this user.
_CACHE_CONTROL = "private, max-age=86400"
_IMAGE_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "image/gif": {}}},
    304: {"description": "Unchanged (`If-None-Match` named its ETag)"},
}


def _unsupported() -> AppError:
    return AppError("The file is not a PNG, JPEG, WebP or GIF image.", code="unsupported_content")


@router.post(
    "",
    response_model=AttachmentOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="attachments-upload",
    responses={413: {"description": "Larger than `ATTACHMENT_MAX_BYTES` (`payload_too_large`)"}},
)
async def upload_attachment(
    request: Request,
    file: Annotated[UploadFile, File(description="A PNG, JPEG, WebP or GIF image")],
    user: CurrentUser,
    session: SessionDep,
) -> Attachment:
    """The type is decided from the bytes (never the file name or the declared type);
    the file name is not read. One `file` per request."""
    # FastAPI parsed the form already; this is its cached copy.
    if len((await request.form()).getlist("file")) != 1:
        raise AppError(
            "Send exactly one file per upload.",
            code="validation_error",
            status_code=422,
            loc=("body", "file"),
        )
    limit = settings.attachment_max_bytes
    chunks: list[bytes] = []
    size = 0
    digest = hashlib.sha256()
    while chunk := await file.read(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise AppError(
                f"An image may hold at most {limit} bytes.",
                code="payload_too_large",
                status_code=413,
            )
        digest.update(chunk)
        chunks.append(chunk)
    data = b"".join(chunks)
    mime_type = sniff_image_type(data[:SNIFF_BYTES])
    if mime_type is None:
        raise _unsupported()
    return await attachment_store.put(session, user.id, mime_type, data, digest.hexdigest())


@router.get(
    "/{attachment_id}",
    response_class=Response,
    response_model=None,
    operation_id="attachments-get",
    responses=_IMAGE_RESPONSES,
)
async def get_attachment(
    attachment_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    """The image's bytes with their type; another user's image is 404, as a missing one."""
    found = await attachment_store.get(session, user.id, attachment_id)
    if found is None:
        raise NotFound("Attachment not found.")
    attachment, data = found
    headers = {
        "Cache-Control": _CACHE_CONTROL,
        "ETag": f'"{attachment.sha256}"',
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(data, media_type=attachment.mime_type, headers=headers)


@router.delete(
    "/{attachment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
    operation_id="attachments-delete",
)
async def delete_attachment(
    attachment_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> None:
    """The messages that showed the image list it no more."""
    if not await attachment_store.delete(session, user.id, attachment_id):
        raise NotFound("Attachment not found.")
