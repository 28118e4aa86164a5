"""The wire contract, protocol v1 (docs/protocol.md). Stdlib only: the browser page and Python client mirror it.

`errors` (error codes), `messages` (what a client sends), `checks` and `parse` (validating it),
`replies` (what the server sends as text) and `frames` (the binary frame format). Import the names
from here.
"""

from __future__ import annotations

from sdxl_breeder.protocol.checks import Check, parse_genome_id, parse_json, parse_prompt
from sdxl_breeder.protocol.errors import ErrorCode, ProtocolError, error_message
from sdxl_breeder.protocol.frames import BroodFrameHeader, FrameHeader, decode_frame, encode_frame, frame_worker
from sdxl_breeder.protocol.messages import (
    CURSOR, MAX_SEQ, PROTOCOL_VERSION, BreedMsg, BroodRequest, ClientMessage, CornersMsg, EvolveMsg, KeepMsg,
    MoveMsg, RecordMsg, RenderRequest, SelectMsg, SettingsMsg,
)
from sdxl_breeder.protocol.parse import (
    MESSAGE_TYPES, message_type, parse_breed_request, parse_brood_request, parse_client_message,
    parse_render_request, parse_select_request,
)
from sdxl_breeder.protocol.replies import (
    brood_message, corners_reply, genome_message, hello, settings_reply, walk_message,
)
from sdxl_breeder.spec import BLEND_MODES, CORNER_NAMES, NOKEN, Corner, Limits

__all__ = [
    "BLEND_MODES", "CORNER_NAMES", "CURSOR", "MAX_SEQ", "MESSAGE_TYPES", "NOKEN", "PROTOCOL_VERSION",
    "BreedMsg", "BroodFrameHeader", "BroodRequest", "Check", "ClientMessage", "Corner", "CornersMsg", "ErrorCode",
    "EvolveMsg", "FrameHeader", "KeepMsg", "Limits", "MoveMsg", "ProtocolError", "RecordMsg", "RenderRequest",
    "SelectMsg", "SettingsMsg",
    "brood_message", "corners_reply", "decode_frame", "encode_frame", "error_message", "frame_worker",
    "genome_message", "hello", "message_type", "parse_breed_request", "parse_brood_request",
    "parse_client_message", "parse_genome_id", "parse_json", "parse_prompt", "parse_render_request",
    "parse_select_request", "settings_reply", "walk_message",
]
