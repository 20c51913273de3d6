"""The built-in benchmark generator: byte determinism across workers and resumes, the manifest, occlusion from
the written masks, camera and object statistics in their declared ranges, the cameras' geometry."""

import hashlib
import json
import math
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from sam3d_eval.data.generate import GenerationConfig, ensure_benchmark, generate_sample, make_benchmark, sample_ids
from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.data.procedural import CATEGORIES
from sam3d_eval.io.mesh_io import load_mesh
from sam3d_eval.ops.rasterize import rasterize_meshes
from sam3d_eval.render.cameras import PerspectiveCameras
from sam3d_eval.structures.meshes import Meshes

SEED = 11
CFG = GenerationConfig(image_size=48)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # What the CLI's runtime policy does; many small ops are far slower on a busy box with two threads.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _digest(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b"
    make_benchmark(out, 2, 2, SEED, CFG, workers=1)
    return out


def test_same_bytes_with_two_workers(bench, tmp_path):
    other = tmp_path / "w2"
    make_benchmark(other, 2, 2, SEED, CFG, workers=2)
    a, b = _digest(bench), _digest(other)
    assert a == b
    assert any(k.startswith("images/real_") for k in a) and "manifest.parquet" in a


def test_resume_finishes_with_same_bytes(bench, tmp_path):
    out = tmp_path / "r"
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_benchmark(out, 2, 2, SEED, CFG, workers=1, progress=interrupt)
    assert not (out / "manifest.csv").exists()
    # A sample cut off between its files: image written, record not; a stale temporary file.
    (out / "records" / "syn_000001.json").unlink()
    (out / "images" / ".x.png.tmp999").write_bytes(b"partial")
    (out / "images" / ".x.png.tmp999").unlink()
    seen = []
    make_benchmark(out, 2, 2, SEED, CFG, workers=1, progress=lambda d, t: seen.append(d))
    assert seen[0] == 2  # two complete samples kept, the cut one redone
    assert _digest(out) == _digest(bench)


def test_other_seed_in_same_folder_is_refused(bench):
    with pytest.raises(ValueError, match="another seed or configuration"):
        make_benchmark(bench, 2, 2, SEED + 1, CFG)


def test_seed_changes_bytes_and_ids_are_stable():
    a = generate_sample(SEED, "syn_000000", "synthetic", CFG)
    b = generate_sample(SEED + 1, "syn_000000", "synthetic", CFG)
    assert not np.array_equal(a.image, b.image)
    assert sample_ids("real", 2) == ["real_000000", "real_000001"]


def test_manifest_validates_and_matches_csv(bench):
    pq = load_manifest(bench / "manifest.parquet")
    csv = load_manifest(bench / "manifest.csv")
    assert list(pq.columns[:9]) == ["sample_id", "image", "mask", "gt_mesh", "domain", "occlusion", "category",
                                    "camera", "split"]
    assert pq["sample_id"].tolist() == csv["sample_id"].tolist() == sample_ids("synthetic", 2) + sample_ids("real", 2)
    assert np.allclose(pq["occlusion"], csv["occlusion"])
    assert set(pq["domain"]) == {"synthetic", "real"}
    assert set(pq["split"]) <= {"train", "val", "test"}
    shift_cols = [c for c in pq.columns if c.startswith("shift_")]
    assert len(shift_cols) == 10
    assert (pq.loc[pq["domain"] == "synthetic", shift_cols] == 0).all().all()
    assert (pq.loc[pq["domain"] == "real", shift_cols] > 0).any().any()
    for p in pq["image"].tolist() + pq["mask"].tolist() + pq["gt_mesh"].tolist():
        assert pathlib.Path(p).is_file()


def test_occlusion_equals_the_mask_computation(bench):
    frame = load_manifest(bench / "manifest.parquet")
    fracs = []
    for _, row in frame.iterrows():
        vis = np.asarray(Image.open(row["mask"])) > 127
        amo = np.asarray(Image.open(bench / row["amodal_mask"])) > 127
        assert not (vis & ~amo).any()  # visible is part of amodal
        expected = 1 - vis.sum() / amo.sum()
        assert row["occlusion"] == pytest.approx(expected, abs=1e-6)
        assert row["visible_px"] == vis.sum() and row["amodal_px"] == amo.sum()
        fracs.append(expected)
    assert all(0 <= f <= 1 for f in fracs)


def _samples(n, domain, cfg=CFG):
    return [generate_sample(SEED, f"stat_{i}", domain, cfg) for i in range(n)]


def test_camera_and_object_statistics_in_declared_ranges():
    cfg = GenerationConfig(image_size=32, shifts={"all": 0})
    samples = _samples(12, "synthetic", cfg)
    for s in samples:
        c, r = s.camera, s.record
        assert 0 <= c["azimuth_deg"] < 360 and -30 <= c["elevation_deg"] <= 60
        assert 35 <= c["fov_deg"] <= 55
        R = np.array(c["R"])
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) == pytest.approx(1.0)
        K = np.array(c["K"])
        assert K[1, 1] == pytest.approx(16 / math.tan(math.radians(c["fov_deg"]) / 2))
        assert r["category"] in CATEGORIES and r["num_objects"] in (1, 2)
        size = float(np.ptp(s.verts, axis=0).max())
        assert 0.25 - 1e-9 <= size <= 0.6 + 1e-9 and r["size_m"] == pytest.approx(size, rel=1e-5)
        # GT mesh frame: origin at the centre of gravity.
        from sam3d_eval.data.scene import centre_of_gravity

        assert np.abs(centre_of_gravity(s.verts, s.faces)).max() < 1e-9
        for p in r["details"]["placement"]:
            assert np.all(np.abs(p["noise"]) <= 0.1)
        assert r["background"] in ("empty", "simple", "cluttered")
        assert r["template"] == "studio" or c["elevation_deg"] >= 8
    assert len({s.record["category"] for s in samples}) >= 4
    assert any(s.record["num_objects"] == 2 for s in samples) and any(s.record["num_objects"] == 1 for s in samples)


def test_camera_json_projects_the_gt_mesh_onto_its_amodal_mask():
    for s in _samples(3, "synthetic"):
        c = s.camera
        K = np.array(c["K"])
        cam = PerspectiveCameras(torch.tensor(c["R"], dtype=torch.float64)[None],
                                 torch.tensor(c["T"], dtype=torch.float64)[None],
                                 torch.tensor([K[0, 0], K[1, 1]]), tuple(c["image_size"]),
                                 torch.tensor([K[0, 2], K[1, 2]]))
        v = torch.from_numpy(s.verts)
        frags = rasterize_meshes(Meshes([v], [torch.from_numpy(s.faces)]), cam.project(v), tuple(c["image_size"]))
        mask = (frags.pix_to_face[0] >= 0).numpy()
        inter, union = (mask & s.amodal).sum(), (mask | s.amodal).sum()
        assert inter / union > 0.97


def test_written_gt_mesh_round_trips(bench):
    frame = load_manifest(bench / "manifest.parquet")
    row = frame.iloc[0]
    s = generate_sample(SEED, row["sample_id"], row["domain"], CFG)
    m = load_mesh(row["gt_mesh"])
    assert torch.allclose(m.verts_list()[0].double(), torch.from_numpy(s.verts), atol=1e-6)
    assert torch.equal(m.faces_list()[0], torch.from_numpy(s.faces))
    assert m.textures is not None
    cam = json.loads((bench / row["camera_file"]).read_text())
    assert cam == json.loads(row["camera"])


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        GenerationConfig(shifts={"fog": 1})
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        GenerationConfig(shifts={"jpeg": 2})
    with pytest.raises(ValueError, match="image_size"):
        GenerationConfig(image_size=4)
    with pytest.raises(ValueError, match="unknown generation setting"):
        GenerationConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="positive number of samples"):
        make_benchmark("/nonexistent/never", 0, 0, 0)


def test_paired_twins_differ_only_by_the_shifts():
    paired = GenerationConfig(image_size=48, paired=True, shift_prob=1.0)
    syn = generate_sample(SEED, "syn_000004", "synthetic", paired)
    real = generate_sample(SEED, "real_000004", "real", paired)
    assert syn.record["pair_id"] == real.record["pair_id"] == "pair_000004"
    for key in ("category", "split", "azimuth_deg", "elevation_deg", "size_m", "material", "pattern", "template"):
        assert syn.record[key] == real.record[key], key
    assert real.record["shift_jpeg"] > 0 and not np.array_equal(syn.image, real.image)
    # With every shift switched off the real twin is the synthetic sample, byte for byte.
    off = GenerationConfig(image_size=48, paired=True, shifts={"all": 0.0})
    bare = generate_sample(SEED, "real_000004", "real", off)
    twin = generate_sample(SEED, "syn_000004", "synthetic", off)
    assert np.array_equal(bare.image, twin.image) and np.array_equal(bare.mask, twin.mask)
    assert np.array_equal(bare.verts, twin.verts) and bare.camera == twin.camera
    # Unpaired (the default), the same ids are unrelated samples and records carry no pair_id.
    a = generate_sample(SEED, "syn_000004", "synthetic", CFG)
    assert "pair_id" not in a.record and not np.array_equal(a.image, twin.image)


def test_paired_setting_is_recorded_only_when_on():
    # Benchmarks made before the setting existed keep the generation.json they were made with.
    assert "paired" not in CFG.to_dict()
    assert GenerationConfig.from_dict(GenerationConfig(paired=True).to_dict()).paired is True
    with pytest.raises(ValueError, match="ids like syn_000012"):
        generate_sample(SEED, "stat_1", "real", GenerationConfig(image_size=48, paired=True))
    with pytest.raises(ValueError, match="paired must be true or false"):
        GenerationConfig(paired="yes")


def test_ensure_benchmark_makes_or_finishes_the_table_s_benchmark(bench, tmp_path):
    """A [data.generate] table (counts, seed, workers, out and GenerationConfig fields) -> the manifest path;
    a complete benchmark is reused as it is."""
    before = _digest(bench)
    lines = []
    table = {"synthetic": 2, "real": 2, "seed": SEED, "image_size": 48}
    assert ensure_benchmark(table, bench, lines.append) == bench / "manifest.csv"
    assert ensure_benchmark({**table, "out": str(bench), "workers": 2}, tmp_path / "unused") == bench / "manifest.csv"
    assert _digest(bench) == before and not (tmp_path / "unused").exists()
    assert lines[0] == f"built-in benchmark: 2 synthetic + 2 real samples in {bench}" and lines[1].startswith("  ready in")
    with pytest.raises(ValueError, match=r"\[data.generate\]: unknown key\(s\) 'colour'; valid keys: synthetic, real, "
                                         r"seed, workers, out, image_size"):
        ensure_benchmark({**table, "colour": 1}, tmp_path)
    with pytest.raises(ValueError, match=r"recipe.toml \[data.generate\]: needs real"):
        ensure_benchmark({"synthetic": 2}, tmp_path, where="recipe.toml [data.generate]")
    with pytest.raises(ValueError, match="another seed or configuration"):
        ensure_benchmark({**table, "seed": SEED + 1}, bench)


# ---- synthetic overlap occluders, the real occluder pattern, unworn ground truth, validation split ----------
def _visible_in_amodal(s) -> bool:
    return not (s.mask & ~s.amodal).any()


def test_synthetic_occlusion_spreads_over_the_summary_bins():
    """The synthetic side is occluded too (overlap occluders), over at least three of the bins the summaries
    use, not only [0, 0.1)."""
    from sam3d_eval.evaluate.summary import occlusion_bin

    cfg = GenerationConfig(image_size=32)
    samples = [generate_sample(SEED, f"syn_{i:06d}", "synthetic", cfg) for i in range(30)]
    occ = np.array([s.record["occlusion"] for s in samples])
    bins = set(occlusion_bin(occ).tolist())
    assert len(bins) >= 3, bins
    assert occ.mean() > 0.15
    for s in samples:
        assert _visible_in_amodal(s)
        assert s.record["occlusion"] <= cfg.max_occlusion + 1e-9
        overlap = s.record["details"]["overlap"]
        if overlap is not None:  # every occluder's parameters are recorded
            assert overlap["count"] == len(overlap["occluders"]) and 1 <= overlap["count"] <= 2
            for occ_rec in overlap["occluders"]:
                assert occ_rec["category"] in CATEGORIES and occ_rec["material"]["kind"] in ("diffuse", "metallic", "translucent")
                assert {"pattern", "centre", "size_m", "yaw_deg", "category_params", "kept"} <= set(occ_rec)
            assert s.record["num_occluders"] == sum(o["kept"] for o in overlap["occluders"])
        else:
            assert s.record["num_occluders"] == 0


def test_twins_share_the_overlap_occluders_and_the_real_twin_adds_clutter():
    paired = GenerationConfig(image_size=48, paired=True, shift_prob=1.0)
    kinds, frag = set(), {"synthetic": [], "real": []}
    from scipy import ndimage

    for k in range(4):
        syn = generate_sample(SEED, f"syn_{k:06d}", "synthetic", paired)
        real = generate_sample(SEED, f"real_{k:06d}", "real", paired)
        a, b = syn.record["details"]["overlap"], real.record["details"]["overlap"]
        assert (a is None) == (b is None)
        if a is not None:  # the same objects, in the same places (the real target is worn, the scene is not)
            strip = lambda d: [{k2: v for k2, v in o.items() if k2 != "kept"} for o in d["occluders"]]  # noqa: E731
            assert strip(a) == strip(b) and a["aim"] == b["aim"]
        assert real.record["shift_wear"] > 0 and real.record["shift_occluders"] > 0
        assert real.record["num_occluders"] > syn.record["num_occluders"]
        kinds |= set(real.record["details"]["shifts"]["occluders"]["kinds"])
        assert _visible_in_amodal(syn) and _visible_in_amodal(real)
        for s in (syn, real):
            assert s.record["occlusion"] == pytest.approx(1 - s.mask.sum() / s.amodal.sum(), abs=1e-6)
            frag[s.record["domain"]].append(ndimage.label(s.mask)[1])
    assert kinds <= {"branch", "wire", "fence", "leaf", "rock"}
    # A different kind of occlusion: the clutter cuts the visible target into more pieces.
    assert np.mean(frag["real"]) > np.mean(frag["synthetic"])


def test_overlap_off_leaves_every_other_draw_as_it_was():
    """overlap_prob = 0: no overlap occluders, and the samples whose scene drew none at overlap_prob = 0.5 are
    the same bytes (the setting only gates its own stream: images, masks, meshes and cameras are those of a
    generator without overlap occluders; records gain the num_occluders column and details.overlap = null)."""
    off = GenerationConfig(image_size=32, overlap_prob=0.0)
    half = GenerationConfig(image_size=32, overlap_prob=0.5)
    same = 0
    for i in range(8):
        a = generate_sample(SEED, f"syn_{i:06d}", "synthetic", off)
        assert a.record["num_occluders"] == 0 and a.record["details"]["overlap"] is None
        b = generate_sample(SEED, f"syn_{i:06d}", "synthetic", half)
        if b.record["details"]["overlap"] is None:
            same += 1
            assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
            assert np.array_equal(a.verts, b.verts) and a.camera == b.camera
        else:
            assert not np.array_equal(a.image, b.image)
    assert 0 < same < 8
    with pytest.raises(ValueError, match="overlap_count"):
        GenerationConfig(overlap_count=(0, 2))
    with pytest.raises(ValueError, match="overlap_occlusion"):
        GenerationConfig(overlap_occlusion=(0.5, 0.2))
    with pytest.raises(ValueError, match="overlap_prob"):
        GenerationConfig(overlap_prob=1.5)
    assert GenerationConfig.from_dict(half.to_dict()) == half


@pytest.fixture(scope="module")
def worn_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("worn") / "b"
    make_benchmark(out, 2, 2, SEED, GenerationConfig(image_size=32, paired=True, shift_prob=1.0), workers=1)
    return out


def test_gt_mesh_unworn_is_written_validated_and_in_the_camera_frame(worn_bench, tmp_path):
    frame = load_manifest(worn_bench / "manifest.csv")
    assert "gt_mesh_unworn" in frame.columns
    for _, row in frame.iterrows():
        path = pathlib.Path(row["gt_mesh_unworn"])
        assert path.is_absolute() and path.is_file() and path.is_relative_to(worn_bench)
        if row["domain"] == "synthetic":
            assert row["gt_mesh_unworn"] == row["gt_mesh"]
            continue
        assert path.parent.name == "meshes_unworn" and row["shift_wear"] > 0
        assert path.read_bytes() != pathlib.Path(row["gt_mesh"]).read_bytes()
        worn, unworn = load_mesh(row["gt_mesh"]), load_mesh(path)
        assert torch.equal(worn.faces_list()[0], unworn.faces_list()[0])
        # Same frame, vertex for vertex: the wear displacement, bounded as the shift says.
        rec = json.loads((worn_bench / "records" / f"{row['sample_id']}.json").read_text())
        wear = rec["details"]["shifts"]["wear"]
        d = (worn.verts_list()[0] - unworn.verts_list()[0]).norm(dim=1)
        assert 0 < float(d.max()) <= wear["bound"] + 1e-5
        # Its own centre of gravity sits where the record says: the origin is the worn mesh's.
        from sam3d_eval.data.scene import centre_of_gravity

        v, f = unworn.verts_list()[0].double().numpy(), unworn.faces_list()[0].numpy()
        assert np.allclose(centre_of_gravity(v, f), wear["unworn_centre_of_gravity"], atol=1e-5)
        # Seen through the recorded camera it still covers the target's amodal mask closely.
        c = json.loads(row["camera"])
        K = np.array(c["K"])
        cam = PerspectiveCameras(torch.tensor(c["R"], dtype=torch.float64)[None],
                                 torch.tensor(c["T"], dtype=torch.float64)[None],
                                 torch.tensor([K[0, 0], K[1, 1]]), tuple(c["image_size"]),
                                 torch.tensor([K[0, 2], K[1, 2]]))
        vt = torch.from_numpy(v)
        mask = (rasterize_meshes(Meshes([vt], [torch.from_numpy(f)]), cam.project(vt),
                                 tuple(c["image_size"])).pix_to_face[0] >= 0).numpy()
        amodal = np.asarray(Image.open(worn_bench / row["amodal_mask"])) > 127
        assert (mask & amodal).sum() / (mask | amodal).sum() > 0.8
    # Without wear the unworn file is the GT mesh, byte for byte.
    out = tmp_path / "nowear"
    make_benchmark(out, 0, 1, SEED, GenerationConfig(image_size=32, shifts={"wear": 0}))
    row = load_manifest(out / "manifest.parquet").iloc[0]
    assert row["shift_wear"] == 0 and row["gt_mesh_unworn"] != row["gt_mesh"]
    assert pathlib.Path(row["gt_mesh_unworn"]).read_bytes() == pathlib.Path(row["gt_mesh"]).read_bytes()


def test_gt_mesh_unworn_is_a_path_column(worn_bench):
    """Validated like gt_mesh (a path leaving the folder is refused) and left out of the row's content hash."""
    import pandas as pd

    from sam3d_eval.data.manifest import ManifestError, validate_manifest
    from sam3d_eval.evaluate.content import manifest_row_sha256

    frame = pd.read_csv(worn_bench / "manifest.csv", dtype=str, keep_default_na=False)
    bad = frame.copy()
    bad.loc[0, "gt_mesh_unworn"] = "../outside.ply"
    with pytest.raises(ManifestError, match="gt_mesh_unworn path '../outside.ply' leaves"):
        validate_manifest(bad, worn_bench)
    blank = frame.copy()
    blank.loc[0, "gt_mesh_unworn"] = ""
    assert validate_manifest(blank, worn_bench)["gt_mesh_unworn"].iloc[0] is None
    row = load_manifest(worn_bench / "manifest.csv").iloc[2].to_dict()
    assert manifest_row_sha256(row) == manifest_row_sha256({**row, "gt_mesh_unworn": "/elsewhere/x.ply"})


def test_the_demo_recipe_has_a_validation_split_and_a_zero_share_warns(tmp_path):
    import tomllib

    from sam3d_eval.data.generate import NoValidationSplitWarning, _split
    from sam3d_eval.seeding import numpy_generator

    demo = pathlib.Path(__file__).resolve().parents[1] / "sam3d_eval" / "workflows" / "demo.toml"
    gen = tomllib.loads(demo.read_text())["data"]["generate"]
    cfg = GenerationConfig.from_dict({k: v for k, v in gen.items() if k not in ("synthetic", "real", "seed", "workers")})
    assert cfg.split_fractions[1] > 0 and cfg.has_validation and cfg.paired
    # The splits the demo's pairs get (drawn per pair, from the pair's split stream): ~150 test pairs stay.
    splits = [_split(numpy_generator(gen["seed"], f"pair_{i:06d}", "split"), cfg.split_fractions)
              for i in range(gen["synthetic"])]
    assert splits.count("val") >= 30 and 130 <= splits.count("test") <= 170
    zero = GenerationConfig(image_size=16, split_fractions=(0.7, 0.0, 0.3), overlap_prob=0.0)
    assert not zero.has_validation
    with pytest.warns(NoValidationSplitWarning, match="no share"):
        make_benchmark(tmp_path / "z", 1, 0, SEED, zero)
    allowed = GenerationConfig(image_size=16, split_fractions=(0.7, 0.0, 0.3), overlap_prob=0.0,
                               allow_no_validation=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NoValidationSplitWarning)
        make_benchmark(tmp_path / "a", 1, 0, SEED, allowed)
    assert "allow_no_validation" not in zero.to_dict() and allowed.to_dict()["allow_no_validation"] is True
