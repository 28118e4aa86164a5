"""The wire contract (docs/protocol.md). Stdlib only: the browser page and Python client mirror it."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any, Callable, Literal

from sdxl_breeder.spec import BLEND_MODES, CORNER_NAMES, NOKEN, Corner, Limits, is_unicode_text

PROTOCOL_VERSION = 1
MAX_SEQ = 2**53  # the largest integer a JavaScript number holds exactly
_HEX = frozenset("0123456789abcdef")
_PREFIX = struct.Struct(">I")  # a binary frame starts with its header's length, big-endian
_ANY = -(2**64), 2**64  # decode_frame checks only types: ranges are the server's promise


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


@dataclass(frozen=True)
class SettingsMsg:
    """Any subset of the session settings; `clear_corner_seeds` is JSON `"corner_seeds": null`."""
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    blend: str | None = None
    quality: int | None = None
    corner_seeds: tuple[int, int, int, int] | None = None
    clear_corner_seeds: bool = False


@dataclass(frozen=True)
class CornersMsg:
    """All four corners in CORNER_NAMES order, optionally with a noken template."""
    corners: tuple[Corner, Corner, Corner, Corner]
    template: str | None = None


@dataclass(frozen=True)
class MoveMsg:
    """A cursor position on the pad; `seq` comes back in the frame header."""
    x: float
    y: float
    seq: int


@dataclass(frozen=True)
class BreedMsg:
    """Breed a child from two genomes (they may be the same); seed None means a random one."""
    parents: tuple[str, str]
    seed: int | None = None
    mutation: float = 0.0


@dataclass(frozen=True)
class RecordMsg:
    """Start or stop recording this session's moves as a walk."""
    action: Literal["start", "stop"]


@dataclass(frozen=True)
class KeepMsg:
    """Save the blend at the current position as a new genome, with an optional label."""
    prompt: str | None = None


@dataclass(frozen=True)
class EvolveMsg:
    """Breed a brood of `count` children from 1–4 parents (genome ids or CURSOR); seed None: random."""
    parents: tuple[str, ...]
    count: int = 9
    mutation: float = 0.2
    seed: int | None = None


@dataclass(frozen=True)
class SelectMsg:
    """Keep some children of a brood as genomes (0-based indices, no repeats)."""
    brood: str
    children: tuple[int, ...]


@dataclass(frozen=True)
class BroodRequest(EvolveMsg):
    """A POST /api/broods body: an evolve without a session, so with its own template and size."""
    template: str | None = None
    width: int = 512
    height: int = 512


CURSOR = "cursor"  # an evolve parent: the blend at the session's current pad position
ClientMessage = SettingsMsg | CornersMsg | MoveMsg | BreedMsg | RecordMsg | KeepMsg | EvolveMsg | SelectMsg


@dataclass(frozen=True)
class RenderRequest:
    """A one-off REST render: a session's corners, settings and position in one request."""
    corners: tuple[Corner, ...]
    template: str | None
    x: float = 0.0
    y: float = 0.0
    seed: int = 0
    blend: str = "lerp"
    width: int = 512
    height: int = 512
    format: str = "jpeg"
    quality: int = 90
    corner_seeds: tuple[int, ...] | None = None


Check = Callable[[Any, str, Limits], Any]  # (value, path, limits) -> the valid value, or raise ProtocolError


def _show(value: object) -> str:
    """A short rendering of a rejected value, so a 5000-character prompt can't flood the error."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    if not is_unicode_text(text):  # a lone surrogate: show it escaped, so the error itself can be sent
        text = json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _bad(path: str, expected: str, value: object, code: ErrorCode = ErrorCode.BAD_VALUE) -> ProtocolError:
    return ProtocolError(code, f"{path} must be {expected}, got {_show(value)}")


def _int(value: object, path: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:  # not bool, not 3.0
        raise _bad(path, f"an integer within [{lo}, {hi}]", value)
    return value


def _number(value: object, path: str, lo: float, hi: float) -> float:
    # bounds are finite, so the range test rejects NaN and ±inf, before float() could overflow
    if type(value) not in (int, float) or not lo <= value <= hi:  # type: ignore[operator]
        raise _bad(path, f"a number within [{lo:g}, {hi:g}]", value)
    return float(value)  # type: ignore[arg-type]


def _seed(value: object, path: str, limits: Limits) -> int:
    return _int(value, path, 0, limits.max_seed)


def _size(value: object, path: str, limits: Limits) -> int:
    lo, hi, m = limits.min_size, limits.max_size, limits.size_multiple
    if type(value) is not int or not lo <= value <= hi or value % m:
        raise _bad(path, f"an integer multiple of {m} within [{lo}, {hi}]", value)
    return value


def _enum(choices: tuple[str, ...]) -> Check:
    def check(value: object, path: str, limits: Limits) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _bad(path, "one of " + ", ".join(f'"{c}"' for c in choices), value)
        return value
    return check


def _nullable(check: Check) -> Check:
    """JSON null is allowed and becomes None (a random seed, no label, no template, clear seeds)."""
    return lambda value, path, limits: None if value is None else check(value, path, limits)


def _list(value: object, path: str, length: int, what: str, item: Check, limits: Limits) -> tuple[Any, ...]:
    if not isinstance(value, list) or len(value) != length:
        raise _bad(path, f"a list of {length} {what}", value)
    return tuple(item(v, f"{path}[{i}]", limits) for i, v in enumerate(value))


def parse_prompt(value: object, limits: Limits = Limits(), field: str = "prompt") -> str:
    """A prompt: a string with some non-whitespace, at most `max_prompt_chars` characters."""
    n = limits.max_prompt_chars
    if not isinstance(value, str) or not value.strip() or len(value) > n or not is_unicode_text(value):
        raise _bad(field, f"a non-blank string of Unicode text of at most {n} characters", value, ErrorCode.BAD_PROMPT)
    return value


def parse_genome_id(value: object, field: str = "genome") -> str:
    """A genome id: 16 lowercase hex characters (ids name files, so nothing else may pass)."""
    if not isinstance(value, str) or len(value) != 16 or not _HEX.issuperset(value):
        raise _bad(field, "a genome id (16 lowercase hex characters)", value)
    return value


_PROMPT: Check = lambda v, p, lim: parse_prompt(v, lim, p)
_GENOME: Check = lambda v, p, _: parse_genome_id(v, p)


def _template(value: object, path: str, limits: Limits) -> str:
    n = limits.max_prompt_chars
    if not isinstance(value, str) or value.count(NOKEN) != 1 or len(value) > n or not is_unicode_text(value):
        raise _bad(path, f'null or a string with one "{NOKEN}", at most {n} characters', value, ErrorCode.BAD_TEMPLATE)
    return value


def _validate(obj: dict[str, Any], path: str, required: dict[str, Check], optional: dict[str, Check],
              limits: Limits) -> dict[str, Any]:
    """Check an object's keys (by name: a typo must not pass silently), then each value."""
    checks = {**required, **optional}
    for key in obj:
        if key not in checks:
            raise ProtocolError(ErrorCode.UNKNOWN_FIELD,
                                f"{path} has unknown field {_show(key)} (allowed: {', '.join(checks)})")
    for key in required:
        if key not in obj:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{path}.{key} is required")
    return {key: checks[key](value, f"{path}.{key}", limits) for key, value in obj.items()}


def _corner(value: object, path: str, limits: Limits) -> Corner:
    if not isinstance(value, dict):
        raise _bad(path, 'an object with "prompt" or "genome"', value)
    corner = Corner(**_validate(value, path, {}, {"prompt": _PROMPT, "genome": _GENOME}, limits))
    if len(value) != 1:  # both keys were valid, or there were none
        code = ErrorCode.BAD_VALUE if value else ErrorCode.MISSING_FIELD
        raise ProtocolError(code, f'{path} needs exactly one of "prompt" or "genome"')
    return corner


def _parent(value: object, path: str, limits: Limits) -> str:
    if value == CURSOR:
        return CURSOR
    if not isinstance(value, str) or len(value) != 16 or not _HEX.issuperset(value):
        raise _bad(path, f'a genome id (16 lowercase hex characters) or "{CURSOR}"', value)
    return value


def _parents(value: object, path: str, limits: Limits) -> tuple[str, ...]:
    n = limits.max_brood_parents
    if not isinstance(value, list) or not 1 <= len(value) <= n:
        raise _bad(path, f'a list of 1 to {n} genome ids or "{CURSOR}"', value)
    parents = tuple(_parent(v, f"{path}[{i}]", limits) for i, v in enumerate(value))
    for i, v in enumerate(parents):
        if v in parents[:i]:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"{path}[{i}] repeats parent {_show(v)}; give each parent once")
    return parents


def _children(value: object, path: str, limits: Limits) -> tuple[int, ...]:
    n = limits.max_brood_children
    if not isinstance(value, list) or not 1 <= len(value) <= n:
        raise _bad(path, f"a list of 1 to {n} child indices", value)
    children = tuple(_int(v, f"{path}[{i}]", 0, n - 1) for i, v in enumerate(value))
    for i, v in enumerate(children):
        if v in children[:i]:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"{path}[{i}] repeats child {v}; choose each child once")
    return children


_CORNERS: Check = lambda v, p, lim: _list(v, p, 4, "corners (" + ", ".join(CORNER_NAMES) + ")", _corner, lim)
_UNIT: Check = lambda v, p, lim: _number(v, p, 0.0, 1.0)
_SETTINGS: dict[str, Check] = {
    "width": _size, "height": _size, "seed": _seed, "blend": _enum(BLEND_MODES),
    "quality": lambda v, p, lim: _int(v, p, lim.min_quality, lim.max_quality),
    "corner_seeds": _nullable(lambda v, p, lim: _list(v, p, 4, "seeds or null", _seed, lim))}
_MESSAGES: dict[str, tuple[type, dict[str, Check], dict[str, Check]]] = {  # kind -> (class, required, optional)
    "settings": (SettingsMsg, {}, _SETTINGS),
    "corners": (CornersMsg, {"corners": _CORNERS}, {"template": _nullable(_template)}),
    "move": (MoveMsg, {"x": _UNIT, "y": _UNIT, "seq": lambda v, p, lim: _int(v, p, 0, MAX_SEQ)}, {}),
    "breed": (BreedMsg, {"parents": lambda v, p, lim: _list(v, p, 2, "genome ids", _GENOME, lim)},
              {"seed": _nullable(_seed), "mutation": lambda v, p, lim: _number(v, p, 0.0, lim.max_mutation)}),
    "record": (RecordMsg, {"action": _enum(("start", "stop"))}, {}),
    "keep": (KeepMsg, {}, {"prompt": _nullable(_PROMPT)}),
    "evolve": (EvolveMsg, {"parents": _parents}, {
        "count": lambda v, p, lim: _int(v, p, 1, lim.max_brood_children), "seed": _nullable(_seed),
        "mutation": lambda v, p, lim: _number(v, p, 0.0, lim.max_brood_mutation)}),
    "select": (SelectMsg, {"brood": lambda v, p, _: parse_genome_id(v, p), "children": _children}, {}),
}


MESSAGE_TYPES = tuple(_MESSAGES)


def message_type(msg: ClientMessage) -> str:
    """The wire `type` of a parsed client message."""
    return next(kind for kind, (cls, _, _) in _MESSAGES.items() if isinstance(msg, cls))
_RENDER: dict[str, Check] = {**_SETTINGS, "x": _UNIT, "y": _UNIT, "template": _nullable(_template),
                             "format": _enum(("jpeg", "png"))}


def _reject_constant(name: str) -> float:
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
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > limits.max_message_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message is {size} bytes; the limit is {limits.max_message_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if _too_deep(text, limits.max_json_depth):
            raise ProtocolError(ErrorCode.TOO_DEEP, f"message nests deeper than {limits.max_json_depth} levels")
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # bad UTF-8, JSONDecodeError, or an integer past Python's digit limit
        raise exc if isinstance(exc, ProtocolError) else ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}")


def _object(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, f"{what} must be a JSON object, got {_show(obj)}")
    return obj


def parse_client_message(data: str | bytes, limits: Limits = Limits()) -> ClientMessage:
    """Parse and validate one websocket message from a client."""
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.BINARY_NOT_SUPPORTED, "binary messages are not supported; send JSON text")
    obj = _object(parse_json(data, limits), "message")
    kind = obj.pop("type", None)
    if kind is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, 'message needs a "type" field')
    if not isinstance(kind, str) or kind not in _MESSAGES:
        code = ErrorCode.UNKNOWN_TYPE if isinstance(kind, str) else ErrorCode.BAD_VALUE
        raise _bad("type", "one of " + ", ".join(_MESSAGES), kind, code)
    cls, required, optional = _MESSAGES[kind]
    values = _validate(obj, kind, required, optional, limits)
    if cls is SettingsMsg:
        if not values:
            raise ProtocolError(ErrorCode.MISSING_FIELD, "settings needs at least one of: " + ", ".join(optional))
        values["clear_corner_seeds"] = "corner_seeds" in values and values["corner_seeds"] is None
    return cls(**values)  # type: ignore[no-any-return]


def parse_render_request(obj: object, limits: Limits = Limits()) -> RenderRequest:
    """A REST render body: "corners" (required) and any of the settings, template, x, y, format."""
    values = _validate(_object(obj, "render request"), "render", {"corners": _CORNERS}, _RENDER, limits)
    return RenderRequest(**{"template": None, **values})


def parse_breed_request(obj: object, limits: Limits = Limits()) -> BreedMsg:
    """A POST /api/breed body: {"parents": [id, id], "seed"?, "mutation"?}."""
    return BreedMsg(**_validate(_object(obj, "breed request"), "breed", *_MESSAGES["breed"][1:], limits))


def parse_brood_request(obj: object, limits: Limits = Limits()) -> BroodRequest:
    """A POST /api/broods body: evolve's fields (genome ids only: REST has no cursor), an
    optional noken template, width and height."""
    _, required, optional = _MESSAGES["evolve"]
    extra = {"template": _nullable(_template), "width": _size, "height": _size}
    values = _validate(_object(obj, "brood request"), "brood", required, {**optional, **extra}, limits)
    if CURSOR in values["parents"]:
        raise _bad("brood.parents", 'genome ids ("cursor" is a websocket session\'s position)', CURSOR)
    return BroodRequest(**values)


def parse_select_request(obj: object, limits: Limits = Limits()) -> tuple[int, ...]:
    """A POST /api/broods/{id}/select body: {"children": [i, ...]}."""
    return _validate(_object(obj, "select request"), "select", {"children": _children}, {}, limits)["children"]


def hello(model: str, limits: Limits, warning: str | None = None, session: str | None = None) -> dict[str, Any]:
    """The first message on every socket; absent optional keys are left out, not sent as null."""
    extra = {k: v for k, v in (("warning", warning), ("session", session)) if v is not None}
    return {"type": "hello", "version": PROTOCOL_VERSION, "model": model, "limits": limits.to_json(), **extra}


def corners_reply(corners: list[dict[str, Any]], template: str | None = None) -> dict[str, Any]:
    return {"type": "corners", "corners": [dict(c) for c in corners], "template": template}


def genome_message(genome: dict[str, Any]) -> dict[str, Any]:
    return {"type": "genome", "genome": dict(genome)}


def brood_message(brood: str, generation: int, seed: int, count: int, parents: list[str],
                  mutation: float) -> dict[str, Any]:
    """Announces a brood; its `count` frames follow, each header naming `brood` and `child`."""
    return {"type": "brood", "brood": brood, "generation": generation, "seed": seed, "count": count,
            "parents": list(parents), "mutation": mutation}


def walk_message(walk_id: str, points: int, seconds: float) -> dict[str, Any]:
    return {"type": "walk", "walk": walk_id, "points": points, "seconds": seconds}


def settings_reply(settings: dict[str, Any]) -> dict[str, Any]:
    return {"type": "settings", **{k: v for k, v in settings.items() if k != "type"}}


def error_message(code: ErrorCode, message: str) -> dict[str, str]:
    return {"type": "error", "code": code.value, "message": message}


@dataclass(frozen=True)
class FrameHeader:
    """What a binary frame shows: the move it answers (seq, x, y) and how it was rendered."""
    seq: int
    x: float
    y: float
    seed: int
    width: int
    height: int
    render_ms: float
    batch: int


@dataclass(frozen=True)
class BroodFrameHeader(FrameHeader):
    """A brood child's frame: the usual header plus its `brood` id and `child` index (0-based).
    It answers an evolve, not a move: seq, x and y are 0."""
    brood: str = ""
    child: int = 0


_FRAME: dict[str, Check] = {
    f.name: (lambda v, p, _: _int(v, p, *_ANY)) if f.type == "int" else (lambda v, p, _: _number(v, p, *_ANY))
    for f in fields(FrameHeader)}
_BROOD_FRAME: dict[str, Check] = {"brood": lambda v, p, _: parse_genome_id(v, p), "child": lambda v, p, _: _int(v, p, *_ANY)}


def encode_frame(header: FrameHeader, image: bytes, extra: dict[str, Any] | None = None) -> bytes:
    """[N: 4-byte big-endian unsigned][N bytes of UTF-8 JSON header][image bytes]. `extra` adds
    header keys beyond FrameHeader (a cluster's `worker`); clients that don't know them ignore them."""
    fields_ = {**(extra or {}), **asdict(header)}
    raw = json.dumps(fields_, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _PREFIX.pack(len(raw)) + raw + bytes(image)


def decode_frame(data: bytes) -> tuple[FrameHeader, bytes]:
    """Split a binary frame (a BroodFrameHeader when it names a brood). Unknown header keys are
    ignored, so servers may add some."""
    n = _PREFIX.unpack_from(data)[0] if len(data) >= _PREFIX.size else -1
    if not 0 <= n <= len(data) - _PREFIX.size:
        raise ProtocolError(ErrorCode.BAD_VALUE, f"frame of {len(data)} bytes is truncated (header length {n})")
    try:
        header = _object(json.loads(data[4:4 + n].decode("utf-8"), parse_constant=_reject_constant), "frame header")
        brood = "brood" in header
        required = {**_FRAME, **_BROOD_FRAME} if brood else _FRAME
        values = _validate({k: v for k, v in header.items() if k in required}, "frame header", required, {}, Limits())
    except (ValueError, RecursionError) as exc:  # whatever failed inside, to the caller it is a garbled frame
        message = exc.message if isinstance(exc, ProtocolError) else f"frame header is not UTF-8 JSON: {exc}"
        raise ProtocolError(ErrorCode.BAD_VALUE, message) from None
    return (BroodFrameHeader if brood else FrameHeader)(**values), data[4 + n:]


def frame_worker(data: bytes) -> str | None:
    """The `worker` header key of a frame from a cluster (the render replica that drew it), else None."""
    n = _PREFIX.unpack_from(data)[0] if len(data) >= _PREFIX.size else -1
    try:
        worker = json.loads(data[4:4 + n].decode("utf-8")).get("worker") if 0 <= n <= len(data) - 4 else None
    except (ValueError, AttributeError):
        return None
    return worker if isinstance(worker, str) else None
