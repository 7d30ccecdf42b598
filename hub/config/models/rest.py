"""``rest_source``: pull records from a CRM front-end's REST API (auth, pagination, time-zoned cursor)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from hub.config.columns import Entity
from hub.config.models.base import (
    SHANGHAI,
    Cursor,
    MappingRef,
    Schedule,
    Strict,
    TemplateBase,
    ValidationRef,
    check_columns,
)
from hub.config.types import HttpUrl, NonEmpty, SecretRef, TimeZoneName
from hub.secrets import is_reference, is_secret_key

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class NoAuth(Strict):
    """No authentication (an internal API behind the firewall)."""

    type: Literal["none"]


class BearerAuth(Strict):
    """``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: SecretRef


class BasicAuth(Strict):
    """HTTP basic authentication."""

    type: Literal["basic"]
    username: NonEmpty
    password: SecretRef


class ApiKeyAuth(Strict):
    """A key sent in a header (or query parameter)."""

    type: Literal["api_key"]
    header: NonEmpty = "X-Api-Key"
    in_query: bool = False
    value: SecretRef


class ClientCredentialsAuth(Strict):
    """OAuth2 client-credentials grant; the token is cached and refreshed before it expires."""

    type: Literal["oauth2_client_credentials"]
    token_url: HttpUrl
    client_id: NonEmpty
    client_secret: SecretRef
    scope: str | None = None


RestAuth = Annotated[
    NoAuth | BearerAuth | BasicAuth | ApiKeyAuth | ClientCredentialsAuth, Field(discriminator="type")
]


class RestConnection(Strict):
    """Where the API is and how to log in."""

    base_url: HttpUrl
    auth: RestAuth
    headers: dict[NonEmpty, str] = Field(default_factory=dict, description="Extra non-secret headers.")
    connect_timeout: float = Field(5.0, gt=0, le=120)
    read_timeout: float = Field(30.0, gt=0, le=600)
    ca_bundle: str | None = None

    @field_validator("headers")
    @classmethod
    def _no_literal_secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, header_value in value.items():
            if is_secret_key(key) and not is_reference(header_value):
                raise ValueError(
                    f"header {key!r} carries a secret given literally; use auth, or an environment reference "
                    "such as ${CRM_API_TOKEN}"
                )
        return value


class PageNumberPaging(Strict):
    """``?page=1&page_size=100``; stops on an empty page or at the reported page count."""

    type: Literal["page_number"]
    page_param: NonEmpty = "page"
    size_param: NonEmpty = "page_size"
    page_size: int = Field(100, ge=1, le=10_000)
    start_page: int = Field(1, ge=0)
    total_pages_path: str | None = Field(None, description="Dotted path of the page count in the reply.")


class OffsetPaging(Strict):
    """``?offset=0&limit=100``."""

    type: Literal["offset"]
    offset_param: NonEmpty = "offset"
    limit_param: NonEmpty = "limit"
    limit: int = Field(100, ge=1, le=10_000)


class CursorPaging(Strict):
    """The reply carries an opaque token for the next page (preferred: stable under concurrent writes)."""

    type: Literal["cursor"]
    cursor_param: NonEmpty = "cursor"
    next_cursor_path: NonEmpty = Field(description="Dotted path of the next-page token in the reply.")
    page_size: int | None = Field(None, ge=1, le=10_000)
    size_param: str = "limit"


class NoPaging(Strict):
    """One request returns everything."""

    type: Literal["none"]


Paging = Annotated[PageNumberPaging | OffsetPaging | CursorPaging | NoPaging, Field(discriminator="type")]


class RestCursor(Cursor):
    """Incremental cursor sent as a query parameter, rendered in an explicit time zone."""

    param: NonEmpty = Field(description="Query parameter carrying the lower bound, e.g. updated_since.")
    format: str = Field(
        "iso8601", description="iso8601 (with offset), epoch_ms, epoch_s, or a strftime pattern."
    )


class RestStream(Strict):
    """One endpoint read into one canonical entity."""

    direction: Literal["pull"] = "pull"
    enabled: bool = True
    path: NonEmpty = Field(description="Path below base_url, e.g. /api/v1/opportunities")
    writes: Entity
    records_path: str = Field("", description="Dotted path of the record list in the reply ('' = top level).")
    primary_key: NonEmpty
    fields: dict[NonEmpty, str] = Field(description="Reply field (dotted path) -> canonical column.")
    pagination: Paging
    mapping: MappingRef | None = Field(
        None, description="Value tables applied after `fields` (e.g. stage names)."
    )
    cursor: RestCursor | None = None
    source_timezone: TimeZoneName = Field(SHANGHAI, description="Zone of naive times in the replies.")
    validation: ValidationRef | None = None
    schedule: Schedule | None = None

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        if "://" in value or ".." in value.split("/") or "\\" in value:
            raise ValueError(f"path {value!r} must be a plain path below base_url (no scheme, no '..')")
        return value if value.startswith("/") else "/" + value

    @field_validator("records_path")
    @classmethod
    def _records_path(cls, value: str) -> str:
        if value and not _DOTTED.match(value):
            raise ValueError(f"records_path {value!r} must be a dotted path such as data.items")
        return value

    @model_validator(mode="after")
    def _known_columns(self) -> RestStream:
        check_columns(self.writes, self.fields, "fields")
        check_columns(self.writes, [self.primary_key], "primary_key")
        if self.cursor is not None:
            check_columns(self.writes, [self.cursor.field], "cursor.field")
        return self


class RestSourceTemplate(TemplateBase):
    """A CRM front-end (or any JSON API) read over REST."""

    kind: Literal["rest_source"]
    connection: RestConnection
    streams: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], RestStream] = Field(min_length=1)
