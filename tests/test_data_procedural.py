"""Procedural categories (closed, outward, size-controlled, varied), materials, patterns, placement and the
scene renderer's masks."""

import numpy as np
import pytest
import trimesh

from sam3d_eval.data.appearance import MATERIAL_KINDS, PATTERNS, sample_material, sample_pattern, vertex_colors
from sam3d_eval.data.procedural import CATEGORIES, make_object, signed_volume
from sam3d_eval.data.scene import (PLACEMENT_NOISE, SceneObject, centre_of_gravity, make_camera, occlusion_fraction,
                                   place_objects, render_scene)
from sam3d_eval.data.lighting import LightRig
from sam3d_eval.seeding import numpy_generator


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_categories_are_closed_outward_and_vary(category):
    sizes, shapes = [], []
    for k in range(3):
        m = make_object(category, numpy_generator(0, category, k), size=0.4)
        t = trimesh.Trimesh(m.verts, m.faces, process=False)
        assert t.is_watertight  # every edge shared by exactly two faces (furniture: per closed part)
        assert signed_volume(m.verts, m.faces) > 0  # outward
        assert np.ptp(m.verts, axis=0).max() == pytest.approx(0.4)
        if m.watertight:
            merged = trimesh.Trimesh(m.verts, m.faces)
            assert merged.is_volume and merged.volume == pytest.approx(signed_volume(m.verts, m.faces))
        sizes.append(np.ptp(m.verts, axis=0) / 0.4)
        shapes.append(len(m.faces) < 20000)
    assert all(shapes)
    assert np.ptp(np.array(sizes), axis=0).max() > 0.02  # proportions vary inside the category


def test_unknown_category_and_material_are_errors():
    with pytest.raises(ValueError, match="unknown category 'cube'"):
        make_object("cube", numpy_generator(0))
    with pytest.raises(ValueError, match="unknown material kind"):
        sample_material(numpy_generator(0), "glass")


def test_materials_and_patterns():
    kinds = {sample_material(numpy_generator(0, "m", i)).kind for i in range(40)}
    assert kinds == set(MATERIAL_KINDS)
    metal = sample_material(numpy_generator(0), "metallic")
    diffuse = sample_material(numpy_generator(0), "diffuse")
    assert metal.metal and metal.specular > diffuse.specular and metal.shininess > diffuse.shininess
    assert sample_material(numpy_generator(0), "translucent").opacity < 1
    pts = numpy_generator(1).uniform(-0.2, 0.2, (500, 3))
    for pattern in PATTERNS:
        c = vertex_colors(pts, sample_pattern(numpy_generator(2), 0.4, pattern))
        assert c.shape == (500, 3) and c.dtype == np.float32 and 0 <= c.min() and c.max() <= 1
        if pattern != "solid":
            assert c.std(0).max() > 0.01  # a pattern, not a flat colour
    assert np.ptp(vertex_colors(pts, sample_pattern(numpy_generator(2), 0.4, "solid")), axis=0).max() == 0


def test_centre_of_gravity_of_a_box_and_placement_noise():
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    v = np.asarray(box.vertices) + [1.0, 2.0, 3.0]
    assert np.allclose(centre_of_gravity(v, np.asarray(box.faces)), [1.0, 2.0, 3.0])
    a = make_object("torus", numpy_generator(3), 0.4)
    b = make_object("blob", numpy_generator(4), 0.3)
    for k in range(20):
        poses = place_objects([(a.verts, a.faces), (b.verts, b.faces)], "tabletop", numpy_generator(5, k))
        for p in poses:
            assert np.all(np.abs(p["noise"]) <= PLACEMENT_NOISE) and p["noise"][1] == 0
        # Resting on the floor, and the two never intersect (bounding cylinders apart).
        for (v, f), p in zip([(a.verts, a.faces), (b.verts, b.faces)], poses):
            world = (v - p["cog"]) @ p["R"].T + p["t"]
            assert world[:, 1].min() == pytest.approx(0.0, abs=1e-12)
        ra = np.linalg.norm(((a.verts - poses[0]["cog"]) @ poses[0]["R"].T)[:, [0, 2]], axis=1).max()
        rb = np.linalg.norm(((b.verts - poses[1]["cog"]) @ poses[1]["R"].T)[:, [0, 2]], axis=1).max()
        assert np.linalg.norm((poses[0]["t"] - poses[1]["t"])[[0, 2]]) > ra + rb
    with pytest.raises(ValueError, match="1 or 2 objects"):
        place_objects([(a.verts, a.faces)] * 3, "studio", numpy_generator(0))


def test_render_masks_and_occlusion_with_a_blocker():
    from sam3d_eval.data.appearance import Material

    ball = make_object("superquadric", numpy_generator(7), 0.4)
    v = ball.verts - centre_of_gravity(ball.verts, ball.faces)
    cam = make_camera(0.0, 0.0, 2.0, np.zeros(3), 40.0, 48)
    mat = Material()
    white = np.ones_like(v, dtype=np.float32)
    target = SceneObject(v, ball.faces, white, mat, "target")
    bg = np.zeros((48, 48, 3), np.float32)
    alone = render_scene([target], cam, LightRig(), bg)
    assert alone.visible.sum() == alone.amodal.sum() > 50
    assert occlusion_fraction(alone.visible, alone.amodal) == 0
    # A blocker between the camera (at +z) and the target, covering its left half in the image.
    blocker = trimesh.creation.box(extents=(0.6, 1.0, 0.05))
    bv = np.asarray(blocker.vertices) + [-0.3 - 1e-3, 0.0, 0.8]
    occ = render_scene([target, SceneObject(bv, np.asarray(blocker.faces), white[: len(bv)], mat, "occluder")],
                       cam, LightRig(), bg)
    assert np.array_equal(occ.amodal, alone.amodal)
    frac = occlusion_fraction(occ.visible, occ.amodal)
    assert 0.3 < frac < 0.7 and frac == pytest.approx(1 - occ.visible.sum() / occ.amodal.sum())
    assert (occ.object_index[occ.amodal & ~occ.visible] == 1).all()
    # On a floor, seen from above: the floor hides nothing, and amodal is the target rendered alone.
    from sam3d_eval.data.scene import floor_object

    lifted = SceneObject(v - [0.0, v[:, 1].min(), 0.0], ball.faces, white, mat, "target")
    above = make_camera(30.0, 25.0, 2.0, np.zeros(3), 40.0, 48)
    floor = floor_object(np.zeros(3), 1.5, 4, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), checker=True)
    on_floor = render_scene([lifted, floor], above, LightRig(), bg)
    ref = render_scene([lifted], above, LightRig(), bg)
    assert np.array_equal(on_floor.amodal, ref.amodal) and np.array_equal(on_floor.visible, ref.visible)
    with pytest.raises(ValueError, match="exactly one target"):
        render_scene([SceneObject(v, ball.faces, white, mat, "object")], cam, LightRig(), bg)
