"""Tests for sdxl_breeder.protocol: client message validation, REST bodies, replies and binary frames."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdxl_breeder.protocol import (
    BLEND_MODES, CORNER_NAMES, NOKEN, PROTOCOL_VERSION, BreedMsg, Corner, CornersMsg, ErrorCode,
    FrameHeader, KeepMsg, Limits, MoveMsg, ProtocolError, RecordMsg, RenderRequest, SettingsMsg,
    corners_reply, decode_frame, encode_frame, error_message, genome_message, hello, parse_breed_request,
    parse_client_message, parse_genome_id, parse_json, parse_prompt, parse_render_request, settings_reply,
    walk_message,
)

A = "0123456789abcdef"
B = "fedcba9876543210"
PROMPTS = [{"prompt": "a red fox"}, {"genome": A}, {"prompt": "a blue whale"}, {"prompt": "a tree"}]


def msg(**fields: Any) -> str:
    return json.dumps(fields)


def move(**over: Any) -> str:
    return msg(**{"type": "move", "x": 0.5, "y": 0.5, "seq": 1, **over})


def corners(items: list[Any], **over: Any) -> str:
    return msg(type="corners", corners=items, **over)


def corner_at(i: int, value: Any) -> list[Any]:
    items: list[Any] = list(PROMPTS)
    items[i] = value
    return items


def raises(data: str | bytes, limits: Limits = Limits()) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(data, limits)
    return info.value


# --------------------------------------------------------------------------- valid messages
@pytest.mark.parametrize("data, expected", [
    (move(x=0, y=1, seq=0), MoveMsg(0.0, 1.0, 0)),
    (move(x=0.25, y=0.75, seq=2**53), MoveMsg(0.25, 0.75, 2**53)),
    (msg(type="settings", width=768), SettingsMsg(width=768)),
    (msg(type="settings", width=64, height=1024, seed=2**32 - 1, blend="slerp", quality=1),
     SettingsMsg(width=64, height=1024, seed=2**32 - 1, blend="slerp", quality=1)),
    (msg(type="settings", corner_seeds=[0, 1, 2, 3]), SettingsMsg(corner_seeds=(0, 1, 2, 3))),
    (msg(type="settings", corner_seeds=None), SettingsMsg(clear_corner_seeds=True)),
    (corners(PROMPTS), CornersMsg((Corner("a red fox"), Corner(genome=A), Corner("a blue whale"), Corner("a tree")))),
    (corners(PROMPTS, template=None), CornersMsg((Corner("a red fox"), Corner(genome=A), Corner("a blue whale"),
                                                  Corner("a tree")))),
    (corners(PROMPTS, template=f"a photo of {NOKEN}, 35mm"),
     CornersMsg((Corner("a red fox"), Corner(genome=A), Corner("a blue whale"), Corner("a tree")),
                f"a photo of {NOKEN}, 35mm")),
    (msg(type="breed", parents=[A, B]), BreedMsg((A, B))),
    (msg(type="breed", parents=[A, A], seed=7, mutation=2), BreedMsg((A, A), 7, 2.0)),
    (msg(type="breed", parents=[A, B], seed=None, mutation=0.5), BreedMsg((A, B), None, 0.5)),
    (msg(type="record", action="start"), RecordMsg("start")),
    (msg(type="record", action="stop"), RecordMsg("stop")),
    (msg(type="keep"), KeepMsg()),
    (msg(type="keep", prompt=None), KeepMsg()),
    (msg(type="keep", prompt="my favourite"), KeepMsg("my favourite")),
])
def test_valid_messages(data: str, expected: object) -> None:
    assert parse_client_message(data) == expected


def test_numbers_are_typed() -> None:
    m = parse_client_message(move(x=1, y=0, seq=5))
    assert isinstance(m, MoveMsg) and type(m.x) is float and type(m.y) is float and type(m.seq) is int


def test_limits_are_honoured() -> None:
    small = Limits(max_message_bytes=100, max_prompt_chars=5, max_size=128, max_mutation=0.5)
    assert raises("x" * 101, small).code is ErrorCode.TOO_LARGE
    assert raises(msg(type="settings", width=192), small).code is ErrorCode.BAD_VALUE
    assert raises(msg(type="keep", prompt="123456"), small).code is ErrorCode.BAD_PROMPT
    assert parse_client_message(msg(type="keep", prompt="12345"), small) == KeepMsg("12345")
    # the size limit counts UTF-8 bytes, not characters
    assert raises(msg(type="keep", prompt="é" * 45), Limits(max_message_bytes=100)).code is ErrorCode.TOO_LARGE


# --------------------------------------------------------------------------- malformed messages
DEEP = msg(type="keep", prompt="x")[:-1] + ', "z": ' + "[" * 100 + "]" * 100 + "}"
LONG = "a" * 5000
# (id, input, expected code, a word the message must contain)
MALFORMED: list[tuple[str, str | bytes, ErrorCode, str]] = [
    ("binary", b'{"type":"move"}', ErrorCode.BINARY_NOT_SUPPORTED, "binary"),
    ("20 KB", msg(type="keep", prompt="a" * 20_000), ErrorCode.TOO_LARGE, "bytes"),
    ("not json", "not json", ErrorCode.BAD_JSON, "JSON"),
    ("truncated json", '{"type": "move", "x": 0.5', ErrorCode.BAD_JSON, "JSON"),
    ("array top level", "[1,2]", ErrorCode.NOT_AN_OBJECT, "object"),
    ("string top level", '"move"', ErrorCode.NOT_AN_OBJECT, "object"),
    ("null top level", "null", ErrorCode.NOT_AN_OBJECT, "object"),
    ("empty object", "{}", ErrorCode.MISSING_FIELD, "type"),
    ("type not a string", '{"type": 5}', ErrorCode.BAD_VALUE, "type"),
    ("unknown type", '{"type": "fly"}', ErrorCode.UNKNOWN_TYPE, "move"),
    ("move missing seq", msg(type="move", x=0.5, y=0.5), ErrorCode.MISSING_FIELD, "move.seq"),
    ("move x string", move(x="0.5"), ErrorCode.BAD_VALUE, "move.x"),
    ("move x true", move(x=True), ErrorCode.BAD_VALUE, "move.x"),
    ("move x null", move(x=None), ErrorCode.BAD_VALUE, "move.x"),
    ("move x NaN", '{"type": "move", "x": NaN, "y": 0.5, "seq": 1}', ErrorCode.BAD_JSON, "NaN"),
    ("move x Infinity", '{"type": "move", "x": Infinity, "y": 0.5, "seq": 1}', ErrorCode.BAD_JSON, "Infinity"),
    ("move y -Infinity", '{"type": "move", "x": 0, "y": -Infinity, "seq": 1}', ErrorCode.BAD_JSON, "Infinity"),
    ("move x 1e999", '{"type": "move", "x": 1e999, "y": 0.5, "seq": 1}', ErrorCode.BAD_VALUE, "move.x"),
    ("move x huge int", '{"type": "move", "x": 1' + "0" * 400 + ', "y": 0, "seq": 1}', ErrorCode.BAD_VALUE, "move.x"),
    ("move x 1.5", move(x=1.5), ErrorCode.BAD_VALUE, "move.x"),
    ("move x -0.1", move(x=-0.1), ErrorCode.BAD_VALUE, "move.x"),
    ("move y 2", move(y=2), ErrorCode.BAD_VALUE, "move.y"),
    ("move seq -1", move(seq=-1), ErrorCode.BAD_VALUE, "move.seq"),
    ("move seq 1.5", move(seq=1.5), ErrorCode.BAD_VALUE, "move.seq"),
    ("move seq 2.0", move(seq=2.0), ErrorCode.BAD_VALUE, "move.seq"),
    ("move seq 2**60", move(seq=2**60), ErrorCode.BAD_VALUE, "move.seq"),
    ("move extra field", move(z=1), ErrorCode.UNKNOWN_FIELD, '"z"'),
    ("settings empty", msg(type="settings"), ErrorCode.MISSING_FIELD, "settings"),
    ("settings width 100", msg(type="settings", width=100), ErrorCode.BAD_VALUE, "settings.width"),
    ("settings width 4096", msg(type="settings", width=4096), ErrorCode.BAD_VALUE, "settings.width"),
    ("settings width 0", msg(type="settings", width=0), ErrorCode.BAD_VALUE, "settings.width"),
    ("settings width 512.0", msg(type="settings", width=512.0), ErrorCode.BAD_VALUE, "settings.width"),
    ("settings width null", msg(type="settings", width=None), ErrorCode.BAD_VALUE, "settings.width"),
    ("settings height 1000", msg(type="settings", height=1000), ErrorCode.BAD_VALUE, "settings.height"),
    ("settings seed -1", msg(type="settings", seed=-1), ErrorCode.BAD_VALUE, "settings.seed"),
    ("settings seed 2**40", msg(type="settings", seed=2**40), ErrorCode.BAD_VALUE, "settings.seed"),
    ("settings seed false", msg(type="settings", seed=False), ErrorCode.BAD_VALUE, "settings.seed"),
    ("settings blend cubic", msg(type="settings", blend="cubic"), ErrorCode.BAD_VALUE, "settings.blend"),
    ("settings quality 0", msg(type="settings", quality=0), ErrorCode.BAD_VALUE, "settings.quality"),
    ("settings quality 101", msg(type="settings", quality=101), ErrorCode.BAD_VALUE, "settings.quality"),
    ("corner_seeds 3", msg(type="settings", corner_seeds=[1, 2, 3]), ErrorCode.BAD_VALUE, "settings.corner_seeds"),
    ("corner_seeds bad item", msg(type="settings", corner_seeds=[1, 2, 3, -4]), ErrorCode.BAD_VALUE,
     "settings.corner_seeds[3]"),
    ("settings unknown field", msg(type="settings", widht=512), ErrorCode.UNKNOWN_FIELD, "widht"),
    ("corners 3 items", corners(PROMPTS[:3]), ErrorCode.BAD_VALUE, "corners.corners"),
    ("corners missing", msg(type="corners"), ErrorCode.MISSING_FIELD, "corners.corners"),
    ("corner empty", corners(corner_at(1, {})), ErrorCode.MISSING_FIELD, "corners.corners[1]"),
    ("corner not object", corners(corner_at(1, "a fox")), ErrorCode.BAD_VALUE, "corners.corners[1]"),
    ("corner both", corners(corner_at(2, {"prompt": "x", "genome": A})), ErrorCode.BAD_VALUE, "corners.corners[2]"),
    ("corner extra key", corners(corner_at(0, {"prompt": "x", "weight": 1})), ErrorCode.UNKNOWN_FIELD, "weight"),
    ("genome path", corners(corner_at(3, {"genome": "../etc"})), ErrorCode.BAD_VALUE, "corners.corners[3].genome"),
    ("genome upper", corners(corner_at(3, {"genome": A.upper()})), ErrorCode.BAD_VALUE, "corners.corners[3].genome"),
    ("genome short", corners(corner_at(3, {"genome": A[:15]})), ErrorCode.BAD_VALUE, "corners.corners[3].genome"),
    ("prompt 5000 chars", corners(corner_at(0, {"prompt": LONG})), ErrorCode.BAD_PROMPT, "corners.corners[0].prompt"),
    ("prompt empty", corners(corner_at(0, {"prompt": ""})), ErrorCode.BAD_PROMPT, "corners.corners[0].prompt"),
    ("prompt blank", corners(corner_at(0, {"prompt": " \n\t"})), ErrorCode.BAD_PROMPT, "corners.corners[0].prompt"),
    ("prompt number", corners(corner_at(0, {"prompt": 5})), ErrorCode.BAD_PROMPT, "corners.corners[0].prompt"),
    ("template no noken", corners(PROMPTS, template="a photo"), ErrorCode.BAD_TEMPLATE, "corners.template"),
    ("template two nokens", corners(PROMPTS, template=f"{NOKEN} and {NOKEN}"), ErrorCode.BAD_TEMPLATE,
     "corners.template"),
    ("template too long", corners(PROMPTS, template=NOKEN + "a" * 1000), ErrorCode.BAD_TEMPLATE, "corners.template"),
    ("breed 1 parent", msg(type="breed", parents=[A]), ErrorCode.BAD_VALUE, "breed.parents"),
    ("breed bad parent", msg(type="breed", parents=[A, "x"]), ErrorCode.BAD_VALUE, "breed.parents[1]"),
    ("breed mutation 5", msg(type="breed", parents=[A, B], mutation=5), ErrorCode.BAD_VALUE, "breed.mutation"),
    ("breed mutation -1", msg(type="breed", parents=[A, B], mutation=-1), ErrorCode.BAD_VALUE, "breed.mutation"),
    ("breed mutation NaN", '{"type": "breed", "parents": ["%s", "%s"], "mutation": NaN}' % (A, B), ErrorCode.BAD_JSON,
     "NaN"),
    ("breed seed string", msg(type="breed", parents=[A, B], seed="7"), ErrorCode.BAD_VALUE, "breed.seed"),
    ("record pause", msg(type="record", action="pause"), ErrorCode.BAD_VALUE, "record.action"),
    ("record no action", msg(type="record"), ErrorCode.MISSING_FIELD, "record.action"),
    ("keep blank label", msg(type="keep", prompt=""), ErrorCode.BAD_PROMPT, "keep.prompt"),
    ("deep nesting 100", DEEP, ErrorCode.TOO_DEEP, "deeper"),
    ("10000 brackets", "[" * 10_000, ErrorCode.TOO_DEEP, "deeper"),
    ("10000 braces", '{"a":' * 3000, ErrorCode.TOO_DEEP, "deeper"),
]


@pytest.mark.parametrize("data, code, mentions", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed(data: str | bytes, code: ErrorCode, mentions: str) -> None:
    err = raises(data)
    assert err.code is code, err.message
    assert mentions in err.message
    assert err.to_json() == {"type": "error", "code": code.value, "message": err.message}
    assert "\n" not in err.message and len(err.message) < 300  # one readable line, even for huge inputs


@pytest.mark.parametrize("label", ["[[[[{{{{" * 10, '\\"' + "[" * 10, "\\" * 7 + '"' + "{" * 10, "\\" * 8 + "]" * 10])
def test_brackets_and_escapes_inside_strings_do_not_count_as_depth(label: str) -> None:
    assert parse_client_message(msg(type="keep", prompt=label)) == KeepMsg(label)


def test_unknown_type_lists_known_types() -> None:
    message = raises('{"type": "fly"}').message
    assert all(t in message for t in ("settings", "corners", "move", "breed", "record", "keep"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps),
                 st.dictionaries(st.sampled_from(["type", "x", "y", "seq", "corners", "parents", "action", "width"]),
                                 json_values | st.sampled_from(["move", "settings", "corners", "breed"]),
                                 max_size=5).map(json.dumps)))
def test_anything_gives_a_message_or_a_protocol_error(data: str) -> None:
    try:
        parse_client_message(data)
    except ProtocolError as err:
        assert isinstance(err.code, ErrorCode) and err.message


# --------------------------------------------------------------------------- shared field parsers
def test_parse_prompt_and_genome_id() -> None:
    assert parse_prompt("  a fox ") == "  a fox "
    assert parse_genome_id(A) == A
    for bad in (None, "", " ", "x" * 1001, 3):
        with pytest.raises(ProtocolError) as info:
            parse_prompt(bad, field="label")
        assert info.value.code is ErrorCode.BAD_PROMPT and "label" in info.value.message
    for bad in (None, "", A.upper(), A + "0", "0123456789abcdeg", "../../etc/passwd", 5):
        with pytest.raises(ProtocolError) as info:
            parse_genome_id(bad, field="id")
        assert info.value.code is ErrorCode.BAD_VALUE and "id" in info.value.message


def test_parse_json_for_rest_bodies() -> None:
    assert parse_json(b'{"a": [1, 2]}') == {"a": [1, 2]}
    for data, code in ((b"\xff\xfe", ErrorCode.BAD_JSON), (b"[" * 50, ErrorCode.TOO_DEEP),
                       (b" " * 20_000, ErrorCode.TOO_LARGE), (b"[NaN]", ErrorCode.BAD_JSON)):
        with pytest.raises(ProtocolError) as info:
            parse_json(data)
        assert info.value.code is code


# --------------------------------------------------------------------------- REST requests
def test_render_request_defaults_and_fields() -> None:
    req = parse_render_request({"corners": PROMPTS})
    assert req == RenderRequest(corners=(Corner("a red fox"), Corner(genome=A), Corner("a blue whale"),
                                         Corner("a tree")), template=None)
    assert (req.x, req.y, req.seed, req.blend, req.width, req.height, req.format, req.quality,
            req.corner_seeds) == (0.0, 0.0, 0, "lerp", 512, 512, "jpeg", 90, None)
    full = parse_render_request({"corners": PROMPTS, "template": f"{NOKEN}!", "x": 1, "y": 0.5, "seed": 9,
                                 "blend": "slerp", "width": 1024, "height": 64, "format": "png", "quality": 50,
                                 "corner_seeds": [1, 2, 3, 4]})
    assert full.template == f"{NOKEN}!" and full.x == 1.0 and full.format == "png" and full.corner_seeds == (1, 2, 3, 4)


@pytest.mark.parametrize("body, code, mentions", [
    ([], ErrorCode.NOT_AN_OBJECT, "object"),
    ({}, ErrorCode.MISSING_FIELD, "render.corners"),
    ({"corners": PROMPTS, "format": "gif"}, ErrorCode.BAD_VALUE, "render.format"),
    ({"corners": PROMPTS, "x": 2}, ErrorCode.BAD_VALUE, "render.x"),
    ({"corners": PROMPTS, "width": 100}, ErrorCode.BAD_VALUE, "render.width"),
    ({"corners": PROMPTS, "quality": 0}, ErrorCode.BAD_VALUE, "render.quality"),
    ({"corners": PROMPTS, "seed": None}, ErrorCode.BAD_VALUE, "render.seed"),
    ({"corners": PROMPTS, "template": "no slot"}, ErrorCode.BAD_TEMPLATE, "render.template"),
    ({"corners": PROMPTS, "type": "render"}, ErrorCode.UNKNOWN_FIELD, "type"),
    ({"corners": corner_at(0, {"prompt": ""})}, ErrorCode.BAD_PROMPT, "render.corners[0].prompt"),
])
def test_render_request_errors(body: object, code: ErrorCode, mentions: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_render_request(body)
    assert info.value.code is code and mentions in info.value.message


def test_breed_request() -> None:
    assert parse_breed_request({"parents": [A, B], "mutation": 0.1}) == BreedMsg((A, B), None, 0.1)
    for body, code in (("x", ErrorCode.NOT_AN_OBJECT), ({}, ErrorCode.MISSING_FIELD),
                       ({"parents": [A, B], "mutation": 2.5}, ErrorCode.BAD_VALUE),
                       ({"parents": [A, B], "extra": 1}, ErrorCode.UNKNOWN_FIELD)):
        with pytest.raises(ProtocolError) as info:
            parse_breed_request(body)
        assert info.value.code is code


# --------------------------------------------------------------------------- server messages
def test_server_messages_are_json() -> None:
    h = hello("sdxl-turbo", Limits(), warning="cpu only", session="s1")
    assert h["type"] == "hello" and h["version"] == PROTOCOL_VERSION == 1 and h["model"] == "sdxl-turbo"
    assert h["limits"] == Limits().to_json() and h["limits"]["max_seed"] == 2**32 - 1
    assert h["warning"] == "cpu only" and h["session"] == "s1"
    assert "warning" not in hello("m", Limits()) and "session" not in hello("m", Limits())
    four = [{"genome": A, "prompt": "p"}] * len(CORNER_NAMES)
    assert corners_reply(four) == {"type": "corners", "corners": four, "template": None}
    assert corners_reply(four, f"{NOKEN}.")["template"] == f"{NOKEN}."
    assert genome_message({"id": A}) == {"type": "genome", "genome": {"id": A}}
    assert walk_message("w1", 10, 1.5) == {"type": "walk", "walk": "w1", "points": 10, "seconds": 1.5}
    assert settings_reply({"width": 512, "type": "x"}) == {"type": "settings", "width": 512}
    assert error_message(ErrorCode.NO_CORNERS, "set corners first") == {
        "type": "error", "code": "no_corners", "message": "set corners first"}
    for m in (h, corners_reply(four), settings_reply({"blend": BLEND_MODES[0]})):
        assert json.loads(json.dumps(m, allow_nan=False)) == m


# --------------------------------------------------------------------------- binary frames
headers = st.builds(
    FrameHeader, seq=st.integers(0, 2**53), x=st.floats(0, 1), y=st.floats(0, 1), seed=st.integers(0, 2**32 - 1),
    width=st.integers(64, 1024), height=st.integers(64, 1024),
    render_ms=st.floats(0, 1e6, allow_nan=False, allow_infinity=False), batch=st.integers(1, 8))


@settings(max_examples=200, deadline=None)
@given(headers, st.binary(max_size=256))
def test_frame_round_trip(header: FrameHeader, image: bytes) -> None:
    data = encode_frame(header, image)
    (n,) = struct.unpack(">I", data[:4])
    assert json.loads(data[4:4 + n].decode("utf-8"))["seq"] == header.seq  # what a JS client reads
    assert decode_frame(data) == (header, image)


def test_frame_types_survive_integral_floats() -> None:
    header, _ = decode_frame(encode_frame(FrameHeader(1, 1.0, 0.0, 2, 512, 512, 3.0, 1), b""))
    assert type(header.x) is float and type(header.render_ms) is float and type(header.seq) is int


def test_frame_ignores_unknown_header_keys() -> None:
    raw = json.dumps({"seq": 1, "x": 0, "y": 1, "seed": 2, "width": 64, "height": 64, "render_ms": 5, "batch": 1,
                      "future": {"a": 1}}).encode()
    header, image = decode_frame(struct.pack(">I", len(raw)) + raw + b"\xff\xd8jpeg")
    assert header == FrameHeader(1, 0.0, 1.0, 2, 64, 64, 5.0, 1) and image == b"\xff\xd8jpeg"


GOOD = encode_frame(FrameHeader(1, 0.5, 0.5, 2, 512, 512, 30.0, 1), b"jpeg")


@pytest.mark.parametrize("data", [
    b"", b"\x00\x00", GOOD[:10], b"\x00\x00\x00\x05{}", struct.pack(">I", 2**32 - 1) + b"{}",
    b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x03\xff\xfe\xfd", b"\x00\x00\x00\x02{}",
    GOOD.replace(b'"seq":1', b'"seq":"1"'), GOOD.replace(b'"x":0.5', b'"x":NaN'),
    GOOD.replace(b'"batch":1', b'"batch":true'),
], ids=["empty", "short prefix", "truncated header", "length past end", "huge length", "array header",
        "not utf-8", "empty header", "seq string", "x NaN", "batch bool"])
def test_garbled_frames(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(data)
    assert info.value.code is ErrorCode.BAD_VALUE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decode_frame_never_crashes(data: bytes) -> None:
    try:
        decode_frame(data)
    except ProtocolError as err:
        assert err.code is ErrorCode.BAD_VALUE


def test_protocol_errors_survive_pickling() -> None:
    # A cluster's workers raise them in one process and the front end answers in another.
    import pickle

    err = pickle.loads(pickle.dumps(ProtocolError(ErrorCode.UNKNOWN_GENOME, "no genome 0123456789abcdef")))
    assert err.code is ErrorCode.UNKNOWN_GENOME and err.message == "no genome 0123456789abcdef"
