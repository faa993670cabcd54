"""One frozen settings object: environment variables ``STREAMER_*`` over an optional TOML file.

Validated once at start; every mistake is reported as one line naming the setting, never its
value (a value may be a password). librdkafka properties are derived here and nowhere else.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streamer.policy import MASKED, SECRETS, KeyPolicy

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class SettingsError(Exception):
    """Invalid configuration: one line per mistake, no values."""


class Delivery(StrEnum):
    EXACTLY_ONCE = "exactly-once"
    AT_LEAST_ONCE = "at-least-once"


class RawFormat(StrEnum):
    """How a route's raw record values are encoded."""

    JSON = "json"
    AVRO = "avro"


class OutputFormat(StrEnum):
    """How a route writes one copy: JSON text; a typed streamer.PublicRecord/ArchiveRecord in
    Avro; or (Avro input only) the masked event in its own Avro schema, derived where needed."""

    JSON = "json"
    AVRO = "avro"
    AVRO_EVENT = "avro-event"


class SubjectNameStrategy(StrEnum):
    """Schema Registry subject of an output schema: ``<topic>-value``, the record's full
    name, or ``<topic>-<full name>`` (Confluent's three strategies)."""

    TOPIC_NAME = "topic-name"
    RECORD_NAME = "record-name"
    TOPIC_RECORD_NAME = "topic-record-name"


_REGISTRY_URL = re.compile(r"^(https?|mock)://\S+$")


class Route(BaseModel):
    """One raw topic and the two topics its masked copies go to, and their formats."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    raw: str
    public: str
    archive: str
    raw_format: RawFormat = RawFormat.JSON
    public_format: OutputFormat = OutputFormat.JSON
    archive_format: OutputFormat = OutputFormat.JSON
    #: Empty: Avro single-object encoding with the schemas of ``schemas/``. Otherwise
    #: Confluent framing with schemas from this (Confluent-compatible) registry.
    schema_registry_url: str = ""
    subject_name_strategy: SubjectNameStrategy = SubjectNameStrategy.TOPIC_NAME

    @field_validator("raw", "public", "archive")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError("not a valid Kafka topic name")
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, value: str) -> str:
        if value and not _REGISTRY_URL.match(value):
            raise ValueError("must be empty or an http://, https:// (or mock://) URL")
        return value

    @model_validator(mode="after")
    def _formats(self) -> Route:
        avro_event = OutputFormat.AVRO_EVENT in (self.public_format, self.archive_format)
        if avro_event and self.raw_format is not RawFormat.AVRO:
            raise ValueError("the avro-event output format needs raw_format avro")
        return self

    @property
    def uses_avro(self) -> bool:
        """Whether any side of this route is Avro (otherwise it is JSON in, JSON out)."""
        outputs = (self.public_format, self.archive_format)
        return self.raw_format is RawFormat.AVRO or any(f is not OutputFormat.JSON for f in outputs)


DEFAULT_ROUTES = (
    Route(
        name="workflow",
        raw="conductor.workflow.raw",
        public="conductor.workflow.public",
        archive="conductor.workflow.archive",
    ),
    Route(
        name="task",
        raw="conductor.task.raw",
        public="conductor.task.public",
        archive="conductor.task.archive",
    ),
)


class Settings(BaseSettings):
    """Everything `streamer` reads from its environment. See the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMER_", frozen=True, extra="forbid", env_ignore_empty=True
    )

    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    group_id: str = Field("streamer", min_length=1)
    transactional_id: str = Field(
        "", description="Transactional id of this instance; default: <group_id>-<hostname>"
    )
    delivery: Delivery = Delivery.EXACTLY_ONCE
    routes: tuple[Route, ...] = Field(DEFAULT_ROUTES, min_length=1)
    quarantine_topic: str = "conductor.quarantine"
    secret_keys: tuple[str, ...] = (SECRETS,)
    masked_keys: tuple[str, ...] = (MASKED,)
    batch_size: int = Field(1000, ge=1, le=100_000)
    commit_interval_ms: int = Field(100, ge=1, le=60_000)
    transaction_timeout_ms: int = Field(60_000, ge=1000)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the metrics endpoint is meant to be scraped
    metrics_port: int = Field(9400, ge=0, le=65535)
    topic_partitions: int = Field(6, ge=1)
    topic_replication: int = Field(1, ge=1)
    kafka: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra librdkafka properties (security.protocol, sasl.*, ssl.*), as secrets",
    )
    log_level: str = "INFO"

    @field_validator("quarantine_topic")
    @classmethod
    def _quarantine_name(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError("not a valid Kafka topic name")
        return value

    @field_validator("routes")
    @classmethod
    def _distinct_topics(cls, routes: tuple[Route, ...]) -> tuple[Route, ...]:
        topics = [t for r in routes for t in (r.raw, r.public, r.archive)]
        if len(set(topics)) != len(topics):
            raise ValueError("every raw, public and archive topic must be distinct")
        return routes

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment wins over the TOML file, which arrives as init values."""
        return env_settings, init_settings

    @property
    def keys(self) -> KeyPolicy:
        return KeyPolicy(frozenset(self.secret_keys), frozenset(self.masked_keys))

    @property
    def exactly_once(self) -> bool:
        return self.delivery is Delivery.EXACTLY_ONCE

    def client_config(self) -> dict[str, str]:
        """librdkafka properties shared by every client; secrets revealed only here."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        config.update({k: v.get_secret_value() for k, v in self.kafka.items()})
        return config


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings or raise :class:`SettingsError` with one line per mistake."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file}: not valid TOML ({exc})") from None
    values.update(overrides)
    try:
        settings = Settings(**values)
        settings.keys  # noqa: B018 - validates the key names together
    except ValidationError as exc:
        raise SettingsError(describe(exc.errors())) from None
    except ValueError as exc:
        raise SettingsError(f"secret_keys/masked_keys: {exc}") from None
    return settings


def describe(errors: list[Mapping[str, Any]] | Any) -> str:
    """One line per mistake: the setting's name (and env variable) and what is wrong."""
    lines = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        name = ".".join(loc) or "settings"
        env = "STREAMER_" + loc[0].upper() if loc else ""
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"setting {name} ({env}): {msg}")
    return "\n".join(lines)
