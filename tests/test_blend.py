"""Tests for sdxl_breeder.model.blend: corner exactness, continuity, symmetry, norms, NaN safety."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from sdxl_breeder.model.blend import (
    BLEND_MODES,
    bilinear_weights,
    blend_bilinear,
    blend_noise,
    lerp,
    slerp_tensor,
    slerp_vectors,
)

FAST = settings(max_examples=50, deadline=None, database=None)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
CORNER_POS = {(0.0, 0.0): 0, (1.0, 0.0): 1, (0.0, 1.0): 2, (1.0, 1.0): 3}


def rand_corners(seed: int, shape: tuple[int, ...] = (5, 16), dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """Four random corner tensors from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g).to(dtype) for _ in range(4)]


# --- bilinear weights -------------------------------------------------------


@FAST
@given(unit, unit)
def test_weights_sum_to_one_and_nonnegative(x: float, y: float) -> None:
    w = bilinear_weights(x, y)
    assert all(wi >= 0.0 for wi in w)
    assert math.isclose(sum(w), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize(("pos", "idx"), list(CORNER_POS.items()))
def test_weights_one_hot_at_corners(pos: tuple[float, float], idx: int) -> None:
    w = bilinear_weights(*pos)
    assert w == tuple(1.0 if i == idx else 0.0 for i in range(4))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1e-9, 1.0 + 1e-9, 2.0])
def test_weights_reject_bad_coordinates(bad: float) -> None:
    with pytest.raises(ValueError, match=r"x must be a finite number in \[0, 1\]"):
        bilinear_weights(bad, 0.5)
    with pytest.raises(ValueError, match=r"y must be a finite number in \[0, 1\]"):
        bilinear_weights(0.5, bad)


# --- exactness ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mode", BLEND_MODES)
def test_blend_exact_at_corners(mode: str, dtype: torch.dtype) -> None:
    corners = rand_corners(0, dtype=dtype)
    for (x, y), idx in CORNER_POS.items():
        assert torch.equal(blend_bilinear(corners, x, y, mode), corners[idx])  # type: ignore[arg-type]
        assert torch.equal(blend_noise(corners, x, y), corners[idx])


@FAST
@given(seeds, unit)
def test_slerp_blend_exact_on_edges(seed: int, s: float) -> None:
    tl, tr, bl, br = c = rand_corners(seed)
    assert torch.equal(blend_bilinear(c, s, 0.0, "slerp"), slerp_vectors(tl, tr, s))
    assert torch.equal(blend_bilinear(c, s, 1.0, "slerp"), slerp_vectors(bl, br, s))
    assert torch.equal(blend_bilinear(c, 0.0, s, "slerp"), slerp_vectors(tl, bl, s))
    assert torch.equal(blend_noise(c, s, 0.0), slerp_tensor(tl, tr, s))


@FAST
@given(seeds)
def test_interpolators_exact_at_endpoints(seed: int) -> None:
    a, b, _, _ = rand_corners(seed)
    for f in (lerp, slerp_vectors, slerp_tensor):
        assert torch.equal(f(a, b, 0.0), a)
        assert torch.equal(f(a, b, 1.0), b)


def test_lerp_centre_is_mean() -> None:
    c = rand_corners(1)
    torch.testing.assert_close(blend_bilinear(c, 0.5, 0.5, "lerp"), sum(c) / 4)


# --- continuity and symmetry ---------------------------------------------------


@FAST
@given(seeds, unit, unit, st.floats(-1e-3, 1e-3), st.floats(-1e-3, 1e-3), st.sampled_from(BLEND_MODES))
def test_small_moves_give_small_changes(seed: int, x: float, y: float, dx: float, dy: float, mode: str) -> None:
    c = rand_corners(seed)
    x2, y2 = min(max(x + dx, 0.0), 1.0), min(max(y + dy, 0.0), 1.0)
    step = abs(x2 - x) + abs(y2 - y)
    max_norm = max(float(torch.linalg.vector_norm(ci, dim=-1).max()) for ci in c)
    # d/dt of a slerp is at most pi*|v| + |dnorm|; 2*pi+2 covers both axes' chains.
    bound = (2 * math.pi + 2) * max_norm * step + 1e-5
    for f in (lambda px, py: blend_bilinear(c, px, py, mode), lambda px, py: blend_noise(c, px, py)):  # type: ignore[arg-type]
        diff = torch.linalg.vector_norm(f(x2, y2) - f(x, y), dim=-1).max()
        assert float(diff) <= bound


@FAST
@given(seeds, unit, unit, st.sampled_from(BLEND_MODES))
def test_mirror_symmetry(seed: int, x: float, y: float, mode: str) -> None:
    tl, tr, bl, br = c = rand_corners(seed)
    ref = blend_bilinear(c, x, y, mode)  # type: ignore[arg-type]
    lr = blend_bilinear([tr, tl, br, bl], 1.0 - x, y, mode)  # type: ignore[arg-type]
    tb = blend_bilinear([bl, br, tl, tr], x, 1.0 - y, mode)  # type: ignore[arg-type]
    torch.testing.assert_close(lr, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tb, ref, atol=1e-5, rtol=1e-5)
    noise = blend_noise(c, x, y)
    torch.testing.assert_close(blend_noise([tr, tl, br, bl], 1.0 - x, y), noise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(blend_noise([bl, br, tl, tr], x, 1.0 - y), noise, atol=1e-5, rtol=1e-5)


# --- slerp properties ----------------------------------------------------------


@FAST
@given(seeds, unit, st.floats(0.1, 10.0))
def test_slerp_interpolates_norms_linearly(seed: int, t: float, scale: float) -> None:
    a, b, _, _ = rand_corners(seed)
    b = b * scale
    out = slerp_vectors(a, b, t)
    na, nb = torch.linalg.vector_norm(a, dim=-1), torch.linalg.vector_norm(b, dim=-1)
    torch.testing.assert_close(torch.linalg.vector_norm(out, dim=-1), (1 - t) * na + t * nb, atol=1e-5, rtol=1e-5)


@FAST
@given(seeds, unit)
def test_slerp_stays_on_the_great_circle(seed: int, t: float) -> None:
    a, b, _, _ = rand_corners(seed, dtype=torch.float64)
    out = slerp_vectors(a, b, t)
    ua, ub, uo = (v / torch.linalg.vector_norm(v, dim=-1, keepdim=True) for v in (a, b, out))
    omega = torch.acos((ua * ub).sum(-1))
    torch.testing.assert_close(torch.acos((ua * uo).sum(-1).clamp(-1, 1)), t * omega, atol=1e-6, rtol=1e-6)


def test_slerp_of_independent_noise_keeps_unit_std() -> None:
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(4, 64, 64, generator=g), torch.randn(4, 64, 64, generator=g)
    assert abs(float(slerp_tensor(a, b, 0.5).std()) - 1.0) < 0.03
    # This is why noise is slerped: lerp shrinks the std to ~1/sqrt(2).
    assert abs(float(lerp(a, b, 0.5).std()) - math.sqrt(0.5)) < 0.03
    assert abs(float(blend_noise([a, b, b.flip(0), a.flip(1)], 0.5, 0.5).std()) - 1.0) < 0.05


# --- degenerate inputs ----------------------------------------------------------


DEGENERATE_TS = [0.0, 1e-8, 0.25, 0.5, 0.75, 1.0 - 1e-8, 1.0]


@pytest.mark.parametrize("t", DEGENERATE_TS)
def test_slerp_equal_and_nearly_equal_vectors(t: float) -> None:
    a = torch.randn(5, 16, generator=torch.Generator().manual_seed(3))
    for b in (a.clone(), a + 1e-6, a * 2.0):
        out = slerp_vectors(a, b, t)
        assert torch.isfinite(out).all()
        # Parallel inputs: the result stays parallel with the lerped norm.
        torch.testing.assert_close(out, lerp(a, b, t), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("t", DEGENERATE_TS)
def test_slerp_opposite_and_zero_vectors_fall_back_to_lerp(t: float) -> None:
    a = torch.randn(5, 16, generator=torch.Generator().manual_seed(4))
    z = torch.zeros_like(a)
    for x, y in ((a, -a), (a, -3.0 * a), (z, a), (a, z), (z, z)):
        out = slerp_vectors(x, y, t)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, lerp(x, y, t), atol=1e-6, rtol=1e-5)
        assert torch.isfinite(slerp_tensor(x, y, t)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", BLEND_MODES)
def test_low_precision_inputs(dtype: torch.dtype, mode: str) -> None:
    c = rand_corners(5, dtype=dtype)
    c[1] = c[0].clone()  # equal corners
    c[2] = -c[0]  # opposite corners
    c[3] = torch.zeros_like(c[0])  # zero corner
    for x, y in ((0.5, 0.5), (0.3, 0.0), (1.0, 0.7), (1e-4, 1 - 1e-4)):
        out = blend_bilinear(c, x, y, mode)  # type: ignore[arg-type]
        assert out.dtype == dtype and torch.isfinite(out).all()
        noise = blend_noise(c, x, y)
        assert noise.dtype == dtype and torch.isfinite(noise).all()


# --- validation -------------------------------------------------------------------


def test_bad_corner_count_shape_and_mode() -> None:
    c = rand_corners(0)
    with pytest.raises(ValueError, match="expected 4 corners"):
        blend_bilinear(c[:3], 0.5, 0.5)
    with pytest.raises(ValueError, match="expected 4 corners"):
        blend_noise(c + c[:1], 0.5, 0.5)
    with pytest.raises(ValueError, match=r"corner 2 has shape \(5, 8\)"):
        blend_bilinear([c[0], c[1], c[2][:, :8], c[3]], 0.5, 0.5)
    with pytest.raises(ValueError, match="all must match"):
        blend_noise([c[0], c[1].double(), c[2], c[3]], 0.5, 0.5)
    with pytest.raises(ValueError, match="valid modes: lerp, slerp"):
        blend_bilinear(c, 0.5, 0.5, "cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="floating point"):
        blend_bilinear([ci.long() for ci in c], 0.5, 0.5)
    for bad in (math.nan, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"x must be a finite number in \[0, 1\]"):
            blend_bilinear(c, bad, 0.5, "slerp")
        with pytest.raises(ValueError, match=r"y must be a finite number in \[0, 1\]"):
            blend_noise(c, 0.5, bad)


def test_bad_interpolator_inputs() -> None:
    a, b, _, _ = rand_corners(0)
    with pytest.raises(ValueError, match="shapes differ"):
        slerp_vectors(a, b[:, :8], 0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        lerp(a, b[:2], 0.5)
    with pytest.raises(ValueError, match="dtypes differ"):
        slerp_tensor(a, b.half(), 0.5)
    with pytest.raises(ValueError, match=r"t must be a finite number in \[0, 1\]"):
        slerp_vectors(a, b, 1.5)
    with pytest.raises(ValueError, match="t must be finite"):
        lerp(a, b, math.inf)
    with pytest.raises(ValueError, match="at least one dimension"):
        slerp_vectors(torch.tensor(1.0), torch.tensor(2.0), 0.5)
    torch.testing.assert_close(lerp(a, b, 2.0), 2 * b - a)  # lerp may extrapolate
