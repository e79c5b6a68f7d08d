"""The backend spec: the body of `POST/PUT/PATCH /api/backends` and an entry of the store file.

It lives in the schema layer so the gateway and the panel's form validate with the very same
model and show the same per-field messages. Field names follow the model-backend daemon seed
(BackendSpec, CanonicalBackendType, ClampMaxOutputTokens) and the self-hosted provider seed
(ModelEndpoint: capabilities, embedding dimension, token modifier). No I/O here.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gatewaytui.schema.durations import parse_duration
from gatewaytui.schema.state import BackendSnapshot, BackendStatus
from gatewaytui.schema.wire import WireModel

BACKEND_TYPES = ("openai", "vllm", "llama-server", "ollama", "sglang", "lmstudio", "tgi")

# Keywords operators (and other tools) use for the same server kinds. Keys are normalised
# (lower case, `_` -> `-`) before the lookup.
BACKEND_TYPE_ALIASES = {
    "openai-compatible": "openai",
    "openai-compat": "openai",
    "oai": "openai",
    "compatible": "openai",
    "vllm-openai": "vllm",
    "llama.cpp": "llama-server",
    "llamacpp": "llama-server",
    "llama-cpp": "llama-server",
    "llama": "llama-server",
    "local": "llama-server",
    "lm-studio": "lmstudio",
    "text-generation-inference": "tgi",
}

BACKEND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
ENV_REF_PREFIX = "env:"
# `env:` references may only name variables meant for backend keys: never the gateway's own
# secrets (SERVER_WORKER_KEY, ...), which an operator could otherwise send to any URL.
BACKEND_KEY_ENV_PREFIX = "GATEWAYTUI_BACKEND_"


def env_ref_problem(name: str) -> str | None:
    """Why `env:<name>` may not be used as a backend key, or None."""
    if not name.startswith(BACKEND_KEY_ENV_PREFIX) or name == BACKEND_KEY_ENV_PREFIX:
        return (
            f"env: may only name variables starting with {BACKEND_KEY_ENV_PREFIX} "
            f"(e.g. env:{BACKEND_KEY_ENV_PREFIX}VLLM), not the gateway's other variables"
        )
    return None


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")

# Fields of a backend as served (GET) that a client may send back unchanged in a PUT/PATCH:
# they are read-only and ignored, so GET -> edit -> PUT works.
READ_ONLY_FIELDS = frozenset(BackendSnapshot.model_fields) - {
    "id",
    "type",
    "url",
    "enabled",
    "include_models",
    "exclude_models",
    "declared_models",
    "labels",
    "timeout_s",
    "max_concurrency",
    "batch_size",
}


MAX_PATTERN_LENGTH = 256


def _walk_regex(items: Any, inside_repeat: bool) -> str | None:
    """What makes a parsed regex able to backtrack without bound, or None."""
    from re import _constants as c  # type: ignore[attr-defined]

    for op, arg in items:
        children: list[Any] = []
        repeated = inside_repeat
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            _low, high, sub = arg
            repeats = high is c.MAXREPEAT or high > 1
            if repeats and inside_repeat:
                return "a repeat inside a repeat (like (a+)+) can take exponential time"
            children, repeated = [sub], inside_repeat or repeats
        elif op is c.BRANCH:
            if inside_repeat:
                return "an alternation inside a repeat (like (a|aa)*) can take exponential time"
            children = list(arg[1])
        elif op in (c.GROUPREF, c.GROUPREF_EXISTS):
            return "back-references are not allowed"
        elif op is c.SUBPATTERN:
            children = [arg[-1]]
        elif op in (c.ASSERT, c.ASSERT_NOT):
            children = [arg[1]]
        for child in children:
            problem = _walk_regex(child, repeated)
            if problem:
                return problem
    return None


def regex_problem(pattern: str) -> str | None:
    """Why a model-filter pattern is refused, or None. Patterns run against every model a
    backend lists, so one that can backtrack without bound (nested repeats, alternation
    under a repeat, back-references) is refused here, before it can ever run."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"longer than {MAX_PATTERN_LENGTH} characters"
    try:
        from re import _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(pattern)
    except re.error as exc:
        return f"is not a regex: {exc}"
    return _walk_regex(parsed, False)


def canonical_backend_type(value: str) -> str:
    """`llama.cpp`, `LlamaCpp`, `llama_server` -> `llama-server`; unknown words pass through."""
    key = value.strip().lower().replace("_", "-")
    return BACKEND_TYPE_ALIASES.get(key, key)


def clamp_max_output_tokens(requested: int, ceiling: int) -> tuple[int, bool]:
    """The output-token request after a model's ceiling; a ceiling of 0 means unknown (no
    clamp). Returns (effective, clamped)."""
    if ceiling > 0 and requested > ceiling:
        return ceiling, True
    return requested, False


def normalise_backend_url(url: str) -> str:
    """The OpenAI base URL: scheme and host checked, no trailing `/`, `/v1` if no path."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("needs a host, e.g. http://10.0.0.5:8000/v1")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not belong in the URL; put the key in api_key")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    try:
        parts.port  # noqa: B018  (raises for a bad port)
    except ValueError:
        raise ValueError("has an invalid port") from None
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


def backend_root_url(url: str) -> str:
    """The server root of an OpenAI base URL (`…/v1` stripped): where Ollama's `/api/tags` is."""
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


class ModelCapability(StrEnum):
    """What a declared model can do (the self-hosted provider's ModelCapability)."""

    CHAT = "chat"
    EMBED = "embed"
    STREAM = "stream"
    THINK = "think"


class SpecModel(BaseModel):
    """Input models refuse unknown fields, so a typo is an error rather than a silent no-op."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DeclaredModel(SpecModel):
    """A model the operator declares for a backend (served even before a probe lists it)."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^\S+$")
    capabilities: list[ModelCapability] = Field(
        default_factory=lambda: [ModelCapability.CHAT, ModelCapability.STREAM], min_length=1
    )
    # strict: `true` or "8" is a mistake, not 1 or 8
    context_length: int = Field(default=0, ge=0, le=100_000_000, strict=True)
    max_output_tokens: int = Field(default=0, ge=0, le=100_000_000, strict=True)
    embedding_dimension: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    token_modifier: float = Field(default=1.0, gt=0, le=100, strict=True)

    @field_validator("capabilities")
    @classmethod
    def _unique_capabilities(cls, value: list[ModelCapability]) -> list[ModelCapability]:
        return list(dict.fromkeys(value))

    @field_validator("embedding_dimension")
    @classmethod
    def _dimension_needs_embed(cls, value: int | None, info: ValidationInfo) -> int | None:
        capabilities = info.data.get("capabilities") or ()
        if value is not None and ModelCapability.EMBED not in capabilities:
            raise ValueError("only for models with the embed capability")
        return value

    def can(self, capability: ModelCapability) -> bool:
        return capability in self.capabilities


class BackendSpec(SpecModel):
    """What an operator configures for one backend (the API body and a store-file entry).

    `api_key` is a secret or a reference `env:VAR` (read from the gateway's environment at
    call time); it is write-only: responses carry `api_key_set` and `api_key_env` instead.
    """

    id: str = Field(min_length=1, max_length=63)
    type: str = "openai"
    url: str = Field(min_length=1, max_length=2048)
    api_key: SecretStr | None = Field(default=None, max_length=8192)
    enabled: bool = True
    include_models: list[str] = Field(default_factory=list, max_length=64)
    exclude_models: list[str] = Field(default_factory=list, max_length=64)
    declared_models: list[DeclaredModel] = Field(default_factory=list, max_length=512)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    timeout_s: float = Field(default=60.0, gt=0, le=3600, strict=True)
    max_concurrency: int = Field(default=8, ge=1, le=100_000, strict=True)
    batch_size: int = Field(default=64, ge=1, le=100_000, strict=True)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.match(BACKEND_ID_PATTERN, value):
            raise ValueError(
                "letters, digits, '.', '_' and '-' only, starting with a letter or digit"
            )
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _canonical_type(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        canonical = canonical_backend_type(value)
        if canonical not in BACKEND_TYPES:
            raise ValueError(f"unknown type {value!r}; expected one of {', '.join(BACKEND_TYPES)}")
        return canonical

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalise_backend_url(value)

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if not secret:
            return None
        if any(ch.isspace() for ch in secret):
            raise ValueError("must not contain spaces or line breaks")
        if secret.startswith(ENV_REF_PREFIX) and not _ENV_NAME.match(secret[len(ENV_REF_PREFIX) :]):
            raise ValueError("env: needs a variable name, e.g. env:VLLM_API_KEY")
        return value

    @field_validator("include_models", "exclude_models")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for index, pattern in enumerate(value):
            if not pattern:
                raise ValueError(f"pattern {index + 1} is empty")
            problem = regex_problem(pattern)
            if problem is not None:
                raise ValueError(f"pattern {index + 1} ({pattern[:60]!r}) {problem}")
        return value

    @field_validator("declared_models")
    @classmethod
    def _unique_models(cls, value: list[DeclaredModel]) -> list[DeclaredModel]:
        seen: set[str] = set()
        for model in value:
            if model.name in seen:
                raise ValueError(f"model {model.name!r} is declared twice")
            seen.add(model.name)
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _LABEL_KEY.match(key):
                raise ValueError(f"label key {key!r}: letters, digits and _ . / - only")
            if len(text) > 256:
                raise ValueError(f"label {key!r}: value longer than 256 characters")
        return value

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                raise ValueError("expected seconds or a duration like 30s, 2m") from None
        return value

    # -- helpers used by the gateway and the panel ----------------------------------------

    @property
    def api_key_env(self) -> str | None:
        """The variable name of an `env:VAR` key (not a secret), else None."""
        if self.api_key is None:
            return None
        secret = self.api_key.get_secret_value()
        return secret[len(ENV_REF_PREFIX) :] if secret.startswith(ENV_REF_PREFIX) else None

    def declared(self, name: str) -> DeclaredModel | None:
        for model in self.declared_models:
            if model.name == name:
                return model
        return None

    def admits(self, model: str) -> bool:
        """A discovered model passes the include (any, if given) and exclude (none) regexes.

        Patterns are searched (unanchored), so `^llama` and `instruct` both work.
        """
        if self.include_models and not any(re.search(p, model) for p in self.include_models):
            return False
        return not any(re.search(p, model) for p in self.exclude_models)

    def stored(self) -> dict[str, Any]:
        """The spec as written to the store file: the key as given (secret or env:VAR)."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["api_key"] = self.api_key.get_secret_value() if self.api_key is not None else None
        return data

    def public(self) -> dict[str, Any]:
        """The spec as a response shows it: never the key, only whether one is set."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["api_key_set"] = self.api_key is not None
        data["api_key_env"] = self.api_key_env
        return data


class ProbeResult(WireModel):
    """What `POST /api/backends/{id}/probe` answers.

    `saved` is false for a dry run (a spec in the body, e.g. the form's "Test connection"):
    nothing was stored and the backend's health is unchanged.
    """

    ok: bool
    backend_id: str
    status: BackendStatus
    latency_ms: float | None = None
    models: list[str] = Field(default_factory=list)
    discovered_models: list[str] = Field(default_factory=list)
    error: str | None = None
    probed_at: datetime
    saved: bool = True
    backend: BackendSnapshot | None = None


_PREFIXES = ("Value error, ", "Assertion failed, ")
# Pydantic's wording for the common cases, said the way an operator reads a form.
_PLAIN = {
    "extra_forbidden": "unknown field",
    "missing": "required",
    "string_too_short": "required",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
}


def field_errors(exc: ValidationError) -> dict[str, str]:
    """`{"url": "must start with http:// or https://", "declared_models.0.name": …}`.

    One message per field, never the input value (it may be a key).
    """
    errors: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"]
        for prefix in _PREFIXES:
            if message.startswith(prefix):
                message = message[len(prefix) :]
        message = _PLAIN.get(error["type"], message)
        errors.setdefault(where, message)
    return errors


def describe_field_errors(errors: dict[str, str]) -> str:
    """One line for an error envelope: `url: must start with …; timeout_s: …`."""
    return "; ".join(f"{where}: {message}" for where, message in errors.items())
