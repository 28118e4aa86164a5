"""Checking untrusted JSON: decoding under the size and depth limits, then each field's value.

A check takes (value, path, limits) and returns the valid value or raises a ProtocolError whose
message names the path, what was expected and (briefly) what came.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from sdxl_breeder.protocol.errors import ErrorCode, ProtocolError
from sdxl_breeder.spec import NOKEN, Corner, Limits, is_unicode_text

_HEX = frozenset("0123456789abcdef")

Check = Callable[[Any, str, Limits], Any]  # (value, path, limits) -> the valid value, or raise ProtocolError


def show(value: object) -> str:
    """A short rendering of a rejected value, so a 5000-character prompt can't flood the error."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    if not is_unicode_text(text):  # a lone surrogate: show it escaped, so the error itself can be sent
        text = json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def bad(path: str, expected: str, value: object, code: ErrorCode = ErrorCode.BAD_VALUE) -> ProtocolError:
    return ProtocolError(code, f"{path} must be {expected}, got {show(value)}")


def integer(value: object, path: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:  # not bool, not 3.0
        raise bad(path, f"an integer within [{lo}, {hi}]", value)
    return value


def number(value: object, path: str, lo: float, hi: float) -> float:
    # bounds are finite, so the range test rejects NaN and ±inf, before float() could overflow
    if type(value) not in (int, float) or not lo <= value <= hi:  # type: ignore[operator]
        raise bad(path, f"a number within [{lo:g}, {hi:g}]", value)
    return float(value)  # type: ignore[arg-type]


def seed(value: object, path: str, limits: Limits) -> int:
    return integer(value, path, 0, limits.max_seed)


def size(value: object, path: str, limits: Limits) -> int:
    lo, hi, m = limits.min_size, limits.max_size, limits.size_multiple
    if type(value) is not int or not lo <= value <= hi or value % m:
        raise bad(path, f"an integer multiple of {m} within [{lo}, {hi}]", value)
    return value


def one_of(choices: tuple[str, ...]) -> Check:
    def check(value: object, path: str, limits: Limits) -> str:
        if not isinstance(value, str) or value not in choices:
            raise bad(path, "one of " + ", ".join(f'"{c}"' for c in choices), value)
        return value
    return check


def nullable(check: Check) -> Check:
    """JSON null is allowed and becomes None (a random seed, no label, no template, clear seeds)."""
    return lambda value, path, limits: None if value is None else check(value, path, limits)


def list_of(value: object, path: str, length: int, what: str, item: Check, limits: Limits) -> tuple[Any, ...]:
    if not isinstance(value, list) or len(value) != length:
        raise bad(path, f"a list of {length} {what}", value)
    return tuple(item(v, f"{path}[{i}]", limits) for i, v in enumerate(value))


def parse_prompt(value: object, limits: Limits = Limits(), field: str = "prompt") -> str:
    """A prompt: a string with some non-whitespace, at most `max_prompt_chars` characters."""
    n = limits.max_prompt_chars
    if not isinstance(value, str) or not value.strip() or len(value) > n or not is_unicode_text(value):
        raise bad(field, f"a non-blank string of Unicode text of at most {n} characters", value, ErrorCode.BAD_PROMPT)
    return value


def is_genome_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 16 and _HEX.issuperset(value)


def parse_genome_id(value: object, field: str = "genome") -> str:
    """A genome id: 16 lowercase hex characters (ids name files, so nothing else may pass)."""
    if not is_genome_id(value):
        raise bad(field, "a genome id (16 lowercase hex characters)", value)
    return value  # type: ignore[return-value]


PROMPT: Check = lambda v, p, lim: parse_prompt(v, lim, p)
GENOME: Check = lambda v, p, _: parse_genome_id(v, p)


def template(value: object, path: str, limits: Limits) -> str:
    n = limits.max_prompt_chars
    if not isinstance(value, str) or value.count(NOKEN) != 1 or len(value) > n or not is_unicode_text(value):
        raise bad(path, f'null or a string with one "{NOKEN}", at most {n} characters', value, ErrorCode.BAD_TEMPLATE)
    return value


def validate(obj: dict[str, Any], path: str, required: dict[str, Check], optional: dict[str, Check],
             limits: Limits) -> dict[str, Any]:
    """Check an object's keys (by name: a typo must not pass silently), then each value."""
    checks = {**required, **optional}
    for key in obj:
        if key not in checks:
            raise ProtocolError(ErrorCode.UNKNOWN_FIELD,
                                f"{path} has unknown field {show(key)} (allowed: {', '.join(checks)})")
    for key in required:
        if key not in obj:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{path}.{key} is required")
    return {key: checks[key](value, f"{path}.{key}", limits) for key, value in obj.items()}


def corner(value: object, path: str, limits: Limits) -> Corner:
    if not isinstance(value, dict):
        raise bad(path, 'an object with "prompt" or "genome"', value)
    result = Corner(**validate(value, path, {}, {"prompt": PROMPT, "genome": GENOME}, limits))
    if len(value) != 1:  # both keys were valid, or there were none
        code = ErrorCode.BAD_VALUE if value else ErrorCode.MISSING_FIELD
        raise ProtocolError(code, f'{path} needs exactly one of "prompt" or "genome"')
    return result


def json_object(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, f"{what} must be a JSON object, got {show(obj)}")
    return obj


def reject_constant(name: str) -> float:
    raise ProtocolError(ErrorCode.BAD_JSON, f"{name} is not valid JSON (numbers must be finite)")


def _too_deep(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`, found without recursion."""
    # drop escapes (\\ first, so \\" still ends a string), then keep what lies between strings
    depth = 0
    for ch in "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[::2]):
        depth += 1 if ch in "[{" else -1 if ch in "]}" else 0
        if depth > limit:
            return True
    return False


def parse_json(data: str | bytes, limits: Limits = Limits()) -> object:
    """Decode JSON under the size, depth and finite-number rules (websocket text and REST bodies)."""
    size_ = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size_ > limits.max_message_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message is {size_} bytes; the limit is {limits.max_message_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if _too_deep(text, limits.max_json_depth):
            raise ProtocolError(ErrorCode.TOO_DEEP, f"message nests deeper than {limits.max_json_depth} levels")
        return json.loads(text, parse_constant=reject_constant)
    except ValueError as exc:  # bad UTF-8, JSONDecodeError, or an integer past Python's digit limit
        raise exc if isinstance(exc, ProtocolError) else ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}")
