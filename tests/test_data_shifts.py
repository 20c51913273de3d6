"""Every real-side shift measurably changes what it claims, against the same sample with the shift off (all
other draws of a sample are keyed by role, so switching one shift leaves the rest of the sample as it was)."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from sam3d_eval.data.generate import GenerationConfig, generate_sample
from sam3d_eval.data.procedural import make_object
from sam3d_eval.data.scene import background_image
from sam3d_eval.data.shifts import (SHIFTS, apply_wear, draw_intensity, kelvin_to_rgb, parse_shift_settings)
from sam3d_eval.seeding import numpy_generator

SEED = 5
SIZE = 48


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(shifts, **kw):
    return GenerationConfig(image_size=kw.pop("image_size", SIZE), shift_prob=1.0, shifts=shifts, **kw)


def _pair(name, sid="real_000001", strength=1.0, **kw):
    on = generate_sample(SEED, sid, "real", _cfg({"all": 0, name: strength}, **kw))
    off = generate_sample(SEED, sid, "real", _cfg({"all": 0}, **kw))
    return on, off


def _f(img):
    return img.astype(np.float64) / 255.0


def _psnr(a, b):
    mse = np.mean((_f(a) - _f(b)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _edge_density(img, keep=None):
    g = _f(img).mean(-1)
    mag = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
    edges = mag > 0.25
    return edges[keep].mean() if keep is not None else edges.mean()


def test_all_shifts_off_gives_the_clean_render_and_records_zero():
    real = generate_sample(SEED, "x", "real", _cfg({"all": 0}))
    syn = generate_sample(SEED, "x", "synthetic", _cfg({"all": 0}))
    assert np.array_equal(real.image, syn.image) and np.array_equal(real.verts, syn.verts)
    assert all(real.record[f"shift_{n}"] == 0 for n in SHIFTS) and real.record["details"]["shifts"] == {}


def test_each_shift_is_recorded_with_its_intensity():
    on, _ = _pair("jpeg", strength=0.6)
    i = on.record["shift_jpeg"]
    assert 0.6 * 0.25 <= i <= 0.6
    assert on.record["details"]["shifts"]["jpeg"] == {"quality": round(90 - 80 * i), "intensity": i}
    assert all(on.record[f"shift_{n}"] == 0 for n in SHIFTS if n != "jpeg")


def test_jpeg_lowers_psnr_to_the_clean_image_more_when_stronger():
    strong, off = _pair("jpeg", strength=1.0)
    weak, _ = _pair("jpeg", strength=0.3)
    assert _psnr(strong.image, off.image) < _psnr(weak.image, off.image) < 50
    assert np.array_equal(strong.mask, off.mask)  # masks are not touched by image shifts


def test_sensor_noise_raises_pixel_variance_as_the_model_predicts():
    on, off = _pair("sensor_noise")
    p = on.record["details"]["shifts"]["sensor_noise"]
    x = _f(off.image)
    expected = math.sqrt(np.mean(x / p["full_well"]) + p["read_sigma"] ** 2)
    measured = np.std(_f(on.image) - x)
    assert 0.7 * expected < measured < 1.4 * expected
    hp = lambda im: np.var(_f(im) - ndimage.uniform_filter(_f(im), (3, 3, 1)))  # noqa: E731
    assert hp(on.image) > hp(off.image)


def test_blur_removes_high_frequencies():
    on, off = _pair("blur")
    lap = lambda im: np.abs(ndimage.laplace(_f(im).mean(-1))).mean()  # noqa: E731
    assert lap(on.image) < 0.8 * lap(off.image)


def test_exposure_moves_brightness_in_the_recorded_direction():
    for sid in ("real_000001", "real_000002", "real_000003"):
        on, off = _pair("exposure", sid=sid)
        ev = on.record["details"]["shifts"]["exposure"]["ev"]
        assert abs(ev) >= 0.3
        d = _f(on.image).mean() - _f(off.image).mean()
        assert d * ev > 0


def test_color_temperature_shifts_the_red_blue_balance():
    assert np.allclose(kelvin_to_rgb(6500), 1.0, atol=0.03)
    assert kelvin_to_rgb(2700)[0] > kelvin_to_rgb(2700)[2] and kelvin_to_rgb(9000)[2] > kelvin_to_rgb(9000)[0]
    for sid in ("real_000001", "real_000002"):
        on, off = _pair("color_temperature", sid=sid)
        k = on.record["details"]["shifts"]["color_temperature"]["kelvin"]
        rb = lambda im: _f(im)[..., 0].mean() / _f(im)[..., 2].mean()  # noqa: E731
        # A warm (low kelvin) light makes the image redder, a cool one bluer.
        assert (rb(on.image) - rb(off.image)) * (6500 - k) > 0


def _tabletop_ids(n):
    out, i = [], 0
    while len(out) < n:
        s = generate_sample(SEED, f"real_{i:06d}", "real", _cfg({"all": 0}, image_size=16))
        if s.record["template"] == "tabletop":
            out.append(f"real_{i:06d}")
        i += 1
    return out


def test_hard_shadows_only_darken_and_darken_somewhere():
    darker = 0
    for sid in _tabletop_ids(2):
        on, off = _pair("hard_shadows", sid=sid)
        diff = off.image.astype(int) - on.image.astype(int)
        assert diff.min() >= -1  # shadows remove light, never add it (1 level of rounding)
        darker += (diff.max(-1) > 20).sum()
    assert darker > 0


def test_harsh_light_raises_contrast_on_the_target():
    gains = []
    for sid in ("real_000001", "real_000002", "real_000003"):
        on, off = _pair("harsh_light", sid=sid)
        lum = lambda im: _f(im).mean(-1)[off.mask]  # noqa: E731
        spread = lambda v: np.percentile(v, 95) - np.percentile(v, 5)  # noqa: E731
        gains.append(spread(lum(on.image)) - spread(lum(off.image)))
        assert on.record["details"]["shifts"]["harsh_light"]["environment_scale"] < 1
    assert np.mean(gains) > 0


def test_wear_moves_the_gt_mesh_by_a_bounded_nonzero_amount():
    m = make_object("blob", numpy_generator(0, "wear_test"), 0.4)
    for i in (0.3, 1.0):
        v, p = apply_wear(m.verts, m.faces, i, numpy_generator(0, "wear", int(i * 10)))
        d = np.linalg.norm(v - m.verts, axis=1)
        assert 0 < d.max() <= 0.08 * i * 0.4 + 1e-12 and p["bound"] == pytest.approx(0.08 * i * 0.4)
        assert d.mean() > 1e-4
    on, off = _pair("wear", sid="real_000004")
    assert np.array_equal(on.faces, off.faces) and np.array_equal(on.colors, off.colors)
    d = np.linalg.norm(on.verts - off.verts, axis=1)
    bound = on.record["details"]["shifts"]["wear"]["bound"]
    assert 0 < d.max() <= 2 * bound  # the worn shape is re-centred at its own centre of gravity


def test_occluders_raise_occlusion():
    deltas = []
    for sid in ("real_000001", "real_000002", "real_000003", "real_000004"):
        on, off = _pair("occluders", sid=sid)
        assert np.array_equal(on.amodal, off.amodal)
        assert not (on.mask & ~off.mask).any()  # occluders can only hide the target
        deltas.append(on.record["occlusion"] - off.record["occlusion"])
        # The clutter comes on top of the scene's synthetic overlap occluders, which stay as they were.
        assert on.record["details"]["overlap"] == off.record["details"]["overlap"]
        assert on.record["num_occluders"] > off.record["num_occluders"]
    assert min(deltas) >= 0 and np.mean(deltas) > 0.05


def test_occluder_clutter_is_thin_irregular_and_photo_textured():
    """The real pattern: clutter kinds the synthetic side never draws, photographs as paint, real-looking
    materials; every piece recorded with its parameters."""
    from sam3d_eval.data.clutter import CLUTTER_KINDS, make_clutter
    from sam3d_eval.data.procedural import signed_volume
    from sam3d_eval.data.shifts import CLUTTER_MATERIALS, PHOTOS

    kinds = set()
    for sid in ("real_000001", "real_000002", "real_000003", "real_000004", "real_000005"):
        on, _ = _pair("occluders", sid=sid)
        rec = on.record["details"]["shifts"]["occluders"]
        assert rec["count"] == len(rec["occluders"]) == len(rec["kinds"]) >= 1
        for occ in rec["occluders"]:
            assert occ["kind"] in CLUTTER_KINDS and occ["texture"]["photo"] in PHOTOS
            assert occ["material"]["kind"] in CLUTTER_MATERIALS and occ["material"]["opacity"] == 1
            assert occ["kept"] and len(occ["centre"]) == 3
            kinds.add(occ["kind"])
    assert len(kinds) >= 3
    for kind in CLUTTER_KINDS:  # closed, outward, in the documented frame
        v, f, params = make_clutter(kind, numpy_generator(0, "clutter", kind), 0.2)
        assert signed_volume(v, f) > 0 and np.allclose((v.min(0) + v.max(0)) / 2, 0, atol=1e-12)
        assert f.min() == 0 and f.max() == len(v) - 1 and params
    thin = make_clutter("wire", numpy_generator(0, "clutter", "thin"), 0.2)[0]
    assert np.ptp(thin, axis=0).max() > 10 * 2 * 0.04 * 0.2  # far longer than thick


def test_occlusion_is_capped_by_dropping_occluders():
    """With a low cap the clutter goes first (the last occluder each time), then the overlap occluders; the
    masks stay exact and the amodal mask does not change."""
    shifts = {"all": 0, "occluders": 1.0}
    sid = "real_000004"
    free = generate_sample(SEED, sid, "real", _cfg(shifts, max_occlusion=1.0))
    capped = generate_sample(SEED, sid, "real", _cfg(shifts, max_occlusion=0.3))
    assert free.record["occlusion"] > 0.6 and capped.record["occlusion"] <= 0.3 and capped.mask.any()
    assert capped.record["num_occluders"] < free.record["num_occluders"]
    clutter = capped.record["details"]["shifts"]["occluders"]
    overlap = capped.record["details"]["overlap"]
    assert clutter["dropped_for_max_occlusion"] >= 1
    kept = [o["kept"] for o in clutter["occluders"]]
    assert kept == sorted(kept, reverse=True)  # dropped from the end
    if overlap["dropped_for_max_occlusion"]:
        assert not any(kept)  # the overlap occluders only after every piece of clutter
    assert np.array_equal(capped.amodal, free.amodal) and not (capped.mask & ~capped.amodal).any()


def test_photo_background_and_clutter_raise_background_edge_density():
    rng = lambda k: numpy_generator(0, "bg", k)  # noqa: E731
    dens = {kind: np.mean([_edge_density((background_image(kind, 1.0, 64, rng(i)) * 255).astype(np.uint8))
                           for i in range(4)]) for kind in ("empty", "simple", "cluttered")}
    assert dens["empty"] == 0 and dens["cluttered"] > dens["simple"] + 0.05
    low = np.mean([_edge_density((background_image("cluttered", 0.55, 64, rng(i)) * 255).astype(np.uint8)) for i in range(6)])
    high = np.mean([_edge_density((background_image("cluttered", 1.0, 64, rng(i)) * 255).astype(np.uint8)) for i in range(6)])
    assert high > low
    on, off = _pair("photo_background", background_complexity=0.0, image_size=64)
    assert off.record["background"] == "empty" and on.record["background"] == "photo"
    bg = ~(off.amodal | on.amodal)
    assert _edge_density(on.image, bg) > _edge_density(off.image, bg) + 0.02


def test_shift_settings_and_intensity_draws():
    s = parse_shift_settings(["all=0.5", "jpeg=0"])
    assert s["jpeg"] == 0 and s["wear"] == 0.5 and set(s) == set(SHIFTS)
    assert parse_shift_settings(["blur=0.2"], base={"all": 0})["blur"] == 0.2
    assert parse_shift_settings(None, base={"all": 0})["blur"] == 0
    with pytest.raises(ValueError, match="NAME=STRENGTH"):
        parse_shift_settings(["jpeg"])
    with pytest.raises(ValueError, match="not a number"):
        parse_shift_settings(["jpeg=x"])
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        parse_shift_settings(["fog=1"])
    draws = [draw_intensity(0.8, 0.5, numpy_generator(1, "d", i)) for i in range(400)]
    applied = [d for d in draws if d > 0]
    assert all(0.2 <= d <= 0.8 for d in applied) and 150 < len(applied) < 250
    assert draw_intensity(0.0, 1.0, numpy_generator(1, "d")) == 0.0
