"""Protocol errors: the stable error codes and the exception that carries one to the client."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """The `code` of an error message: stable strings clients may switch on."""
    BAD_JSON = "bad_json"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    BAD_VALUE = "bad_value"
    UNKNOWN_GENOME = "unknown_genome"
    UNKNOWN_WALK = "unknown_walk"
    UNKNOWN_BROOD = "unknown_brood"
    NO_CORNERS = "no_corners"
    BAD_PROMPT = "bad_prompt"
    BAD_TEMPLATE = "bad_template"
    RENDER_FAILED = "render_failed"
    NOT_RECORDING = "not_recording"
    UNAUTHORIZED = "unauthorized"
    BUSY = "busy"
    RATE_LIMITED = "rate_limited"
    STORE_FULL = "store_full"
    INTERNAL = "internal"


class ProtocolError(ValueError):
    """A rejected message or request; `message` is one line meant for a human."""
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return error_message(self.code, self.message)

    def __reduce__(self) -> tuple[type, tuple[ErrorCode, str]]:
        return type(self), (self.code, self.message)  # pickles (a cluster sends errors between processes)


def error_message(code: ErrorCode, message: str) -> dict[str, str]:
    return {"type": "error", "code": code.value, "message": message}
