"""Blending of four corner "genomes" (tensors) at a cursor position on the pad.

Corners are always ordered TL, TR, BL, BR. The pad position (x, y) lies in
[0, 1]^2 with (0, 0) at the top-left, x growing right and y growing down.
All functions are pure torch math: exact at corners, NaN-free on degenerate input.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor

BlendMode = Literal["lerp", "slerp"]
from sdxl_breeder.spec import BLEND_MODES

# Below this sin(angle) two directions count as parallel / antiparallel: the slerp
# coefficients sin((1-t)w)/sin(w) lose precision there, so a fallback is used.
_PARALLEL_SIN = 1e-4


def _check_unit(name: str, v: float) -> float:
    """Return v as float, or raise ValueError if it is not finite or not in [0, 1]."""
    v = float(v)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a finite number in [0, 1], got {v!r}")
    return v


def _check_pair(a: Tensor, b: Tensor) -> None:
    """Raise ValueError unless a and b are floating tensors of equal shape and dtype."""
    if a.shape != b.shape:
        raise ValueError(f"tensor shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"tensor dtypes differ: {a.dtype} vs {b.dtype}")
    if not a.is_floating_point():
        raise ValueError(f"tensors must be floating point, got {a.dtype}")


def _compute_dtype(t: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (fp16/bf16/fp32) is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def bilinear_weights(x: float, y: float) -> tuple[float, float, float, float]:
    """(w_tl, w_tr, w_bl, w_br) = ((1-x)(1-y), x(1-y), (1-x)y, xy).

    Raises ValueError if x or y is not finite or outside [0, 1].
    """
    x = _check_unit("x", x)
    y = _check_unit("y", y)
    return ((1.0 - x) * (1.0 - y), x * (1.0 - y), (1.0 - x) * y, x * y)


def lerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Linear interpolation a*(1-t) + b*t; returns a exactly at t == 0 and b at t == 1.

    t only has to be finite (extrapolation is allowed). a + (b-a)*t is avoided
    because it is not exact at t == 1.
    """
    _check_pair(a, b)
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"t must be finite, got {t!r}")
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    cd = _compute_dtype(a)
    out = a.to(cd) * (1.0 - t) + b.to(cd) * t
    return out.to(a.dtype)


def slerp_vectors(a: Tensor, b: Tensor, t: float, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation of each vector along the last dim, norms lerped.

    result = slerp(unit(a), unit(b), t) * ((1-t)|a| + t|b|). Exactly a at t == 0
    and b at t == 1. Fallbacks (all NaN-free):
    - nearly parallel directions: normalised lerp of the directions;
    - (nearly) opposite directions or a norm below eps: plain lerp of the raw
      vectors (there is no preferred great circle, and lerp is deterministic;
      for exactly opposite equal-norm vectors this passes through zero).
    Computed in float32 (float64 for float64 input) and cast back.
    """
    _check_pair(a, b)
    if a.dim() < 1:
        raise ValueError("slerp_vectors needs tensors with at least one dimension")
    t = _check_unit("t", t)
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    return slerp_rows(a, b, torch.tensor(t, dtype=_compute_dtype(a), device=a.device), eps)


def slerp_rows(a: Tensor, b: Tensor, t: Tensor, eps: float = 1e-7) -> Tensor:
    """`slerp_vectors` with `t` a tensor broadcastable against `a[..., :1]` (one t per row of a
    batch), in batched tensor ops with no host round trip. Exactly a where t == 0, b where t == 1."""
    cd = _compute_dtype(a)
    af, bf, t = a.to(cd), b.to(cd), t.to(cd)
    na = torch.linalg.vector_norm(af, dim=-1, keepdim=True)
    nb = torch.linalg.vector_norm(bf, dim=-1, keepdim=True)
    ua = af / na.clamp_min(eps)
    ub = bf / nb.clamp_min(eps)
    # atan2 form of the angle is accurate near 0 and pi, unlike acos(dot).
    omega = 2.0 * torch.atan2(
        torch.linalg.vector_norm(ua - ub, dim=-1, keepdim=True),
        torch.linalg.vector_norm(ua + ub, dim=-1, keepdim=True),
    )
    sin_omega = torch.sin(omega)
    parallel = sin_omega < _PARALLEL_SIN
    safe_sin = torch.where(parallel, torch.ones_like(sin_omega), sin_omega)
    ca = torch.where(parallel, (1.0 - t).expand_as(omega), torch.sin((1.0 - t) * omega) / safe_sin)
    cb = torch.where(parallel, t.expand_as(omega), torch.sin(t * omega) / safe_sin)
    direction = ca * ua + cb * ub
    # Renormalise so the result norm is exactly the interpolated norm (also
    # turns the parallel-case lerp of directions into a normalised lerp).
    direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True).clamp_min(eps)
    out = direction * ((1.0 - t) * na + t * nb)
    raw = (na < eps) | (nb < eps) | (parallel & (omega > 0.5 * math.pi))
    out = torch.where(raw, af * (1.0 - t) + bf * t, out)
    out = torch.where(t == 0.0, af, torch.where(t == 1.0, bf, out))
    return out.to(a.dtype)


def slerp_tensor(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Slerp of whole tensors as one flattened vector (norm lerped).

    Used for Gaussian noise: two independent noise tensors are nearly orthogonal,
    so slerp keeps their norm (unit variance) where lerp would shrink it by
    ~sqrt(2) at t = 0.5. Same exactness and NaN guarantees as slerp_vectors.
    """
    _check_pair(a, b)
    t = _check_unit("t", t)
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    return slerp_vectors(a.reshape(-1), b.reshape(-1), t).reshape(a.shape)


def _check_corners(corners: Sequence[Tensor]) -> None:
    """Raise ValueError unless corners are 4 floating tensors of one shape and dtype."""
    if len(corners) != 4:
        raise ValueError(f"expected 4 corners (TL, TR, BL, BR), got {len(corners)}")
    for i, c in enumerate(corners):
        if not isinstance(c, Tensor):
            raise ValueError(f"corner {i} is not a tensor: {type(c).__name__}")
    for i, c in enumerate(corners[1:], start=1):
        if c.shape != corners[0].shape or c.dtype != corners[0].dtype:
            raise ValueError(
                f"corner {i} has shape {tuple(c.shape)}/{c.dtype}, "
                f"corner 0 has {tuple(corners[0].shape)}/{corners[0].dtype}; all must match"
            )
    if not corners[0].is_floating_point():
        raise ValueError(f"corners must be floating point, got {corners[0].dtype}")


def blend_bilinear(corners: Sequence[Tensor], x: float, y: float, mode: BlendMode = "lerp") -> Tensor:
    """Blend 4 same-shape tensors [..., d] (TL, TR, BL, BR) at pad position (x, y).

    lerp: sum of w_i * c_i with bilinear_weights. slerp: slerp_vectors along x
    (top and bottom edges), then along y. Both return a corner bitwise exactly
    at that corner; slerp returns the edge slerp exactly on an edge.
    """
    _check_corners(corners)
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {mode!r}; valid modes: {', '.join(BLEND_MODES)}")
    bilinear_weights(x, y)  # checks x and y
    cd = _compute_dtype(corners[0])
    xy = torch.tensor([[x, y]], dtype=cd, device=corners[0].device)
    out = blend_rows(torch.stack(list(corners))[None], xy, slerp=mode == "slerp")
    return out[0].to(corners[0].dtype)


def row_weights(xy: Tensor) -> Tensor:
    """Bilinear weights `[B, 4]` (TL, TR, BL, BR) of pad positions `xy` `[B, 2]`; one-hot exactly
    at a corner."""
    x, y = xy[:, 0:1], xy[:, 1:2]
    return torch.cat([(1.0 - x) * (1.0 - y), x * (1.0 - y), (1.0 - x) * y, x * y], dim=1)


def blend_rows(corners: Tensor, xy: Tensor, slerp: bool | Tensor = False) -> Tensor:
    """`blend_bilinear` for a batch in tensor ops: corners `[B, 4, ..., d]`, positions `xy`
    `[B, 2]`, `slerp` one flag for all rows or a bool tensor `[B]` (rows may mix modes).
    Computed in float32 (float64 for float64 input); exactly a corner at that corner."""
    cd = _compute_dtype(corners)
    c = corners.to(cd)
    xy = xy.to(cd)
    extra = (1,) * (c.dim() - 2)  # broadcast a per-row value over [..., d]
    mixed = isinstance(slerp, Tensor)
    out = None
    if mixed or not slerp:
        w = row_weights(xy).view(*xy.shape[:1], 4, *extra)
        out = (w * c).sum(1)  # elementwise per row: a frame blends alike alone or in a batch
    if mixed or slerp:
        x = xy[:, 0].view(-1, *extra)
        y = xy[:, 1].view(-1, *extra)
        top = slerp_rows(c[:, 0], c[:, 1], x)
        bottom = slerp_rows(c[:, 2], c[:, 3], x)
        curved = slerp_rows(top, bottom, y)
        out = curved if out is None else torch.where(slerp.view(-1, *extra), curved, out)  # type: ignore[union-attr]
    assert out is not None
    return out


def blend_noise(corners: Sequence[Tensor], x: float, y: float) -> Tensor:
    """Blend 4 Gaussian noise tensors with whole-tensor slerp (x then y).

    Keeps unit variance across the pad; exact at corners and edge-exact.
    """
    _check_corners(corners)
    x = _check_unit("x", x)
    y = _check_unit("y", y)
    tl, tr, bl, br = corners
    top = slerp_tensor(tl, tr, x)
    bottom = slerp_tensor(bl, br, x)
    return slerp_tensor(top, bottom, y)
