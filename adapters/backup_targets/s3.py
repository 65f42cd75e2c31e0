"""``S3BackupTarget``: backups in an S3 bucket (AWS, MinIO, moto), streamed as multipart uploads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from adapters.backup_targets.base import already_exists, not_found, validate_key, validate_prefix
from domain.errors import PermanentError, TransientError

__all__ = ["S3BackupTarget"]

_MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "403",
    "AllAccessDisabled",
}
_RETRYABLE = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "Throttling", "InternalError"}


def _translate(e: Exception, what: str) -> Exception:
    """Map a botocore/aiohttp error to TransientError or PermanentError."""
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _NOT_FOUND:
            return not_found(what)
        if code == "PreconditionFailed" or status == 412:
            return already_exists(what)
        if code in _DENIED:
            return PermanentError("access_denied", f"{what}: {e}")
        if code == "NoSuchBucket":
            return PermanentError("bucket_not_found", f"{what}: {e}")
        if status >= 500 or status == 429 or code in _RETRYABLE:
            return TransientError(f"{what}: {e}")
        return PermanentError("s3_error", f"{what}: {e}")
    # connection refused, DNS, timeouts, truncated bodies: the service may come back
    return TransientError(f"{what}: {e}")


_LIBRARY_ERRORS = (BotoCoreError, ClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class _S3Writer:
    """Buffers up to one part, so peak memory is about ``part_size`` per writer."""

    def __init__(self, target: S3BackupTarget, key: str) -> None:
        self._t, self._key, self._s3key = target, key, target._s3_key(key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise RuntimeError("writer is closed")
        self._buffer += chunk
        if len(self._buffer) >= self._t._part_size:
            await self._upload_part()

    async def _upload_part(self) -> None:
        client = await self._t._get_client()
        try:
            if self._upload_id is None:
                created = await client.create_multipart_upload(
                    Bucket=self._t._bucket, Key=self._s3key
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            resp = await client.upload_part(
                Bucket=self._t._bucket,
                Key=self._s3key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self._t.uri(self._key)) from e
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if "ChecksumCRC32" in resp:
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        self._parts.append(part)
        self._buffer.clear()

    async def commit(self) -> None:
        if self._done:
            raise RuntimeError("writer is closed")
        client = await self._t._get_client()
        try:
            if self._upload_id is None:  # small object: one conditional PUT
                await client.put_object(
                    Bucket=self._t._bucket,
                    Key=self._s3key,
                    Body=bytes(self._buffer),
                    IfNoneMatch="*",
                )
            else:
                if self._buffer:
                    await self._upload_part()
                await client.complete_multipart_upload(
                    Bucket=self._t._bucket,
                    Key=self._s3key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                    IfNoneMatch="*",
                )
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self._t.uri(self._key)) from e
        self._done = True
        self._buffer = bytearray()

    async def abort(self) -> None:
        self._done = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        client = await self._t._get_client()
        try:
            await client.abort_multipart_upload(
                Bucket=self._t._bucket, Key=self._s3key, UploadId=upload_id
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return  # already aborted or completed
            raise _translate(e, self._t.uri(self._key)) from e
        except _LIBRARY_ERRORS as e:
            # a bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop for this
            raise _translate(e, self._t.uri(self._key)) from e


class S3BackupTarget:
    """Stores each key as ``<prefix>/<key>`` in ``bucket``; commit is a conditional write."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        part_size: int = 8 << 20,
        *,
        create_bucket: bool = False,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if part_size < _MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {_MIN_PART_SIZE} bytes (S3 minimum)")
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._endpoint_url = endpoint_url
        self._region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._part_size = part_size
        self._create_bucket = create_bucket
        self._config = AioConfig(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self._client: Any = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def _s3_key(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._s3_key(key)}"

    async def start(self) -> None:
        """Open the client (and create the bucket if asked); called lazily by every operation."""
        await self._get_client()

    async def _get_client(self) -> Any:
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        endpoint_url=self._endpoint_url,
                        region_name=self._region,
                        aws_access_key_id=self._access_key_id,
                        aws_secret_access_key=self._secret_access_key,
                        config=self._config,
                    )
                )
                try:
                    if self._create_bucket:
                        await self._ensure_bucket(client)
                except BaseException:
                    await stack.aclose()
                    raise
                self._client, self._exit_stack = client, stack
            return self._client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self._bucket)
            return
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) not in {"404", "NoSuchBucket"}:
                raise _translate(e, f"s3://{self._bucket}") from e
        except _LIBRARY_ERRORS as e:
            raise _translate(e, f"s3://{self._bucket}") from e
        kwargs: dict[str, Any] = {"Bucket": self._bucket}
        if self._region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            await client.create_bucket(**kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in {
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            }:
                raise _translate(e, f"s3://{self._bucket}") from e
        except _LIBRARY_ERRORS as e:
            raise _translate(e, f"s3://{self._bucket}") from e

    async def open_writer(self, key: str) -> _S3Writer:
        self._s3_key(key)
        await self._get_client()
        return _S3Writer(self, key)

    async def put(self, key: str, data: bytes) -> None:
        client = await self._get_client()
        try:
            await client.put_object(
                Bucket=self._bucket, Key=self._s3_key(key), Body=data, IfNoneMatch="*"
            )
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self.uri(key)) from e

    def read(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        return self._read(key, self._s3_key(key), chunk_size)

    async def _read(self, key: str, s3key: str, chunk_size: int) -> AsyncIterator[bytes]:
        client = await self._get_client()
        try:
            resp = await client.get_object(Bucket=self._bucket, Key=s3key)
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self.uri(key)) from e
        async with resp["Body"] as body:
            try:
                while chunk := await body.read(chunk_size):
                    yield chunk
            except _LIBRARY_ERRORS as e:
                raise _translate(e, self.uri(key)) from e

    async def exists(self, key: str) -> bool:
        client = await self._get_client()
        try:
            await client.head_object(Bucket=self._bucket, Key=self._s3_key(key))
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return False
            raise _translate(e, self.uri(key)) from e
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self.uri(key)) from e
        return True

    async def delete(self, key: str) -> None:
        client = await self._get_client()
        try:
            await client.delete_object(Bucket=self._bucket, Key=self._s3_key(key))  # 204 if missing
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self.uri(key)) from e

    async def discard_partials(self, key: str) -> int:
        """Abort the key's incomplete multipart uploads (they are billed, and invisible)."""
        s3key = self._s3_key(key)
        client = await self._get_client()
        aborted = 0
        try:
            paginator = client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=s3key):
                for upload in page.get("Uploads", []):
                    if upload["Key"] != s3key:
                        continue
                    with contextlib.suppress(ClientError):  # NoSuchUpload: gone meanwhile
                        await client.abort_multipart_upload(
                            Bucket=self._bucket, Key=s3key, UploadId=upload["UploadId"]
                        )
                        aborted += 1
        except _LIBRARY_ERRORS as e:
            raise _translate(e, self.uri(key)) from e
        return aborted

    async def list(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        root = f"{self._prefix}/" if self._prefix else ""
        client = await self._get_client()
        keys: list[str] = []
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=root + prefix):
                keys.extend(obj["Key"][len(root) :] for obj in page.get("Contents", []))
        except _LIBRARY_ERRORS as e:
            raise _translate(e, f"s3://{self._bucket}/{root}{prefix}") from e
        return sorted(keys)

    async def close(self) -> None:
        async with self._lock:
            stack, self._exit_stack, self._client = self._exit_stack, None, None
        if stack is not None:
            await stack.aclose()
