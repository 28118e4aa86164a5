"""Parsing client input: a websocket message or a REST body, validated into its typed message."""

from __future__ import annotations

from sdxl_breeder.protocol import checks as c
from sdxl_breeder.protocol.checks import Check
from sdxl_breeder.protocol.errors import ErrorCode, ProtocolError
from sdxl_breeder.protocol.messages import (
    CURSOR, MAX_SEQ, BreedMsg, BroodRequest, ClientMessage, CornersMsg, EvolveMsg, KeepMsg, MoveMsg, RecordMsg,
    RenderRequest, SelectMsg, SettingsMsg,
)
from sdxl_breeder.spec import BLEND_MODES, CORNER_NAMES, Limits


def _parent(value: object, path: str, limits: Limits) -> str:
    if value == CURSOR:
        return CURSOR
    if not c.is_genome_id(value):
        raise c.bad(path, f'a genome id (16 lowercase hex characters) or "{CURSOR}"', value)
    return value  # type: ignore[return-value]


def _parents(value: object, path: str, limits: Limits) -> tuple[str, ...]:
    n = limits.max_brood_parents
    if not isinstance(value, list) or not 1 <= len(value) <= n:
        raise c.bad(path, f'a list of 1 to {n} genome ids or "{CURSOR}"', value)
    parents = tuple(_parent(v, f"{path}[{i}]", limits) for i, v in enumerate(value))
    for i, v in enumerate(parents):
        if v in parents[:i]:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"{path}[{i}] repeats parent {c.show(v)}; give each parent once")
    return parents


def _children(value: object, path: str, limits: Limits) -> tuple[int, ...]:
    n = limits.max_brood_children
    if not isinstance(value, list) or not 1 <= len(value) <= n:
        raise c.bad(path, f"a list of 1 to {n} child indices", value)
    children = tuple(c.integer(v, f"{path}[{i}]", 0, n - 1) for i, v in enumerate(value))
    for i, v in enumerate(children):
        if v in children[:i]:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"{path}[{i}] repeats child {v}; choose each child once")
    return children


_CORNERS: Check = lambda v, p, lim: c.list_of(v, p, 4, "corners (" + ", ".join(CORNER_NAMES) + ")", c.corner, lim)
_UNIT: Check = lambda v, p, lim: c.number(v, p, 0.0, 1.0)
_SETTINGS: dict[str, Check] = {
    "width": c.size, "height": c.size, "seed": c.seed, "blend": c.one_of(BLEND_MODES),
    "quality": lambda v, p, lim: c.integer(v, p, lim.min_quality, lim.max_quality),
    "corner_seeds": c.nullable(lambda v, p, lim: c.list_of(v, p, 4, "seeds or null", c.seed, lim))}
MESSAGES: dict[str, tuple[type, dict[str, Check], dict[str, Check]]] = {  # kind -> (class, required, optional)
    "settings": (SettingsMsg, {}, _SETTINGS),
    "corners": (CornersMsg, {"corners": _CORNERS}, {"template": c.nullable(c.template)}),
    "move": (MoveMsg, {"x": _UNIT, "y": _UNIT, "seq": lambda v, p, lim: c.integer(v, p, 0, MAX_SEQ)}, {}),
    "breed": (BreedMsg, {"parents": lambda v, p, lim: c.list_of(v, p, 2, "genome ids", c.GENOME, lim)},
              {"seed": c.nullable(c.seed), "mutation": lambda v, p, lim: c.number(v, p, 0.0, lim.max_mutation)}),
    "record": (RecordMsg, {"action": c.one_of(("start", "stop"))}, {}),
    "keep": (KeepMsg, {}, {"prompt": c.nullable(c.PROMPT)}),
    "evolve": (EvolveMsg, {"parents": _parents}, {
        "count": lambda v, p, lim: c.integer(v, p, 1, lim.max_brood_children), "seed": c.nullable(c.seed),
        "mutation": lambda v, p, lim: c.number(v, p, 0.0, lim.max_brood_mutation)}),
    "select": (SelectMsg, {"brood": c.GENOME, "children": _children}, {}),
}
MESSAGE_TYPES = tuple(MESSAGES)
_RENDER: dict[str, Check] = {**_SETTINGS, "x": _UNIT, "y": _UNIT, "template": c.nullable(c.template),
                             "format": c.one_of(("jpeg", "png"))}


def message_type(msg: ClientMessage) -> str:
    """The wire `type` of a parsed client message."""
    return next(kind for kind, (cls, _, _) in MESSAGES.items() if isinstance(msg, cls))


def parse_client_message(data: str | bytes, limits: Limits = Limits()) -> ClientMessage:
    """Parse and validate one websocket message from a client."""
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.BINARY_NOT_SUPPORTED, "binary messages are not supported; send JSON text")
    obj = c.json_object(c.parse_json(data, limits), "message")
    kind = obj.pop("type", None)
    if kind is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, 'message needs a "type" field')
    if not isinstance(kind, str) or kind not in MESSAGES:
        code = ErrorCode.UNKNOWN_TYPE if isinstance(kind, str) else ErrorCode.BAD_VALUE
        raise c.bad("type", "one of " + ", ".join(MESSAGES), kind, code)
    cls, required, optional = MESSAGES[kind]
    values = c.validate(obj, kind, required, optional, limits)
    if cls is SettingsMsg:
        if not values:
            raise ProtocolError(ErrorCode.MISSING_FIELD, "settings needs at least one of: " + ", ".join(optional))
        values["clear_corner_seeds"] = "corner_seeds" in values and values["corner_seeds"] is None
    return cls(**values)  # type: ignore[no-any-return]


def parse_render_request(obj: object, limits: Limits = Limits()) -> RenderRequest:
    """A REST render body: "corners" (required) and any of the settings, template, x, y, format."""
    values = c.validate(c.json_object(obj, "render request"), "render", {"corners": _CORNERS}, _RENDER, limits)
    return RenderRequest(**{"template": None, **values})


def parse_breed_request(obj: object, limits: Limits = Limits()) -> BreedMsg:
    """A POST /api/breed body: {"parents": [id, id], "seed"?, "mutation"?}."""
    return BreedMsg(**c.validate(c.json_object(obj, "breed request"), "breed", *MESSAGES["breed"][1:], limits))


def parse_brood_request(obj: object, limits: Limits = Limits()) -> BroodRequest:
    """A POST /api/broods body: evolve's fields (genome ids only: REST has no cursor), an
    optional noken template, width and height."""
    _, required, optional = MESSAGES["evolve"]
    extra = {"template": c.nullable(c.template), "width": c.size, "height": c.size}
    values = c.validate(c.json_object(obj, "brood request"), "brood", required, {**optional, **extra}, limits)
    if CURSOR in values["parents"]:
        raise c.bad("brood.parents", 'genome ids ("cursor" is a websocket session\'s position)', CURSOR)
    return BroodRequest(**values)


def parse_select_request(obj: object, limits: Limits = Limits()) -> tuple[int, ...]:
    """A POST /api/broods/{id}/select body: {"children": [i, ...]}."""
    return c.validate(c.json_object(obj, "select request"), "select", {"children": _children}, {}, limits)["children"]
