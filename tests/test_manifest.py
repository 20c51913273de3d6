"""The evaluation manifest: formats, normalisation, and errors that name the row and the problem."""

import json
import pathlib
import re

import pandas as pd
import pytest

from sam3d_eval.data.manifest import ManifestError, extra_columns, load_manifest, strata_columns

HEADER = "sample_id,image,mask,gt_mesh,domain,occlusion,category,source_lab\n"


def _csv(tmp_path, body, header=HEADER, name="m.csv"):
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def test_csv_round_trip_keeps_unknown_columns_and_resolves_paths(tmp_path):
    path = _csv(tmp_path, "007,img/a.png,img/a_m.png,gt/a.ply,synthetic,0.25,chair,lab1\n"
                          "b,img/b.png,,gt/b.obj,Real ,1,table,lab2\n")
    m = load_manifest(path)
    assert list(m["sample_id"]) == ["007", "b"]  # ids stay strings (no int coercion of "007")
    assert m["gt_mesh"][0] == str(tmp_path / "gt" / "a.ply")
    assert m["mask"][1] is None  # an empty optional path
    assert list(m["domain"]) == ["synthetic", "real"]
    assert m["occlusion"].dtype == "float64" and list(m["occlusion"]) == [0.25, 1.0]
    assert extra_columns(m) == ["source_lab"] and list(m["source_lab"]) == ["lab1", "lab2"]
    assert strata_columns(m) == ["domain", "occlusion", "category", "source_lab"]


def test_jsonl_and_parquet_give_the_same_frame(tmp_path):
    rows = [
        {"sample_id": "a", "gt_mesh": "a.ply", "domain": "real", "occlusion": 0.5, "category": "mug",
         "camera": {"f": 1.2}, "extra": 3},
        {"sample_id": "b", "gt_mesh": "sub/b.ply", "domain": "synthetic", "occlusion": 0, "category": "mug", "extra": 4},
    ]
    jl = tmp_path / "m.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a = load_manifest(jl)
    assert json.loads(a["camera"][0]) == {"f": 1.2} and a["camera"][1] is None
    pq = tmp_path / "m.parquet"
    pd.DataFrame([{**r, "camera": json.dumps(r.get("camera")) if "camera" in r else None} for r in rows]).to_parquet(pq)
    b = load_manifest(pq)
    for col in ("sample_id", "gt_mesh", "domain", "occlusion", "category", "extra"):
        assert list(a[col]) == list(b[col]), col


@pytest.mark.parametrize(
    "body, words",
    [
        ("a,i.png,m.png,a.ply,synthetic,0.1,x,1\na,i.png,m.png,b.ply,real,0.2,x,1\n",
         ["line 3", "'a'", "duplicate sample_id", "line 2"]),
        ("a,i.png,m.png,../outside.ply,synthetic,0.1,x,1\n", ["line 2", "'a'", "gt_mesh", "leaves"]),
        ("a,/etc/passwd,m.png,a.ply,synthetic,0.1,x,1\n", ["line 2", "image", "leaves"]),
        ("a,i.png,m.png,a.ply,synthetic,1.5,x,1\n", ["line 2", "occlusion", "[0, 1]", "1.5"]),
        ("a,i.png,m.png,a.ply,synthetic,half,x,1\n", ["occlusion", "'half'"]),
        ("a,i.png,m.png,a.ply,synthetic,0.1,x,1\nb,i.png,m.png,b.ply,cartoon,0.1,x,1\n",
         ["line 3", "'b'", "unknown domain", "'cartoon'", "synthetic, real"]),
        (",i.png,m.png,a.ply,synthetic,0.1,x,1\n", ["line 2", "empty sample_id"]),
        ("a,i.png,m.png,,synthetic,0.1,x,1\n", ["line 2", "empty gt_mesh"]),
    ],
)
def test_errors_name_the_row_and_the_problem(tmp_path, body, words):
    with pytest.raises(ManifestError) as exc:
        load_manifest(_csv(tmp_path, body))
    msg = str(exc.value)
    assert "m.csv" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_columns_are_listed(tmp_path):
    with pytest.raises(ManifestError, match=r"missing column\(s\) gt_mesh .*required: sample_id, gt_mesh; optional: domain"):
        load_manifest(_csv(tmp_path, "a,x\n", header="sample_id,category\n"))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_strata_columns_are_optional_and_stay_absent(tmp_path, suffix):
    rows = [{"sample_id": "a", "gt_mesh": "a.ply"}, {"sample_id": "b", "gt_mesh": "b.ply"}]
    path = tmp_path / f"m{suffix}"
    if suffix == ".csv":
        path.write_text("sample_id,gt_mesh\na,a.ply\nb,b.ply\n")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        pd.DataFrame(rows).to_parquet(path)
    m = load_manifest(path)
    assert list(m.columns) == ["sample_id", "gt_mesh"]  # no domain / occlusion / category filled in
    assert strata_columns(m) == [] and extra_columns(m) == []
    assert list(m["gt_mesh"]) == [str(tmp_path / "a.ply"), str(tmp_path / "b.ply")]


def test_an_optional_column_that_is_present_is_validated(tmp_path):
    m = load_manifest(_csv(tmp_path, "a,a.ply, Real\nb,b.ply,real\n", header="sample_id,gt_mesh,domain\n"))
    assert list(m["domain"]) == ["real", "real"] and "occlusion" not in m.columns and strata_columns(m) == ["domain"]
    with pytest.raises(ManifestError, match="line 3 .*unknown domain 'cartoon'"):
        load_manifest(_csv(tmp_path, "a,a.ply,real\nb,b.ply,cartoon\n", header="sample_id,gt_mesh,domain\n"))
    with pytest.raises(ManifestError, match="line 2 .*occlusion must be a number in \\[0, 1\\], got nan"):
        load_manifest(_csv(tmp_path, "a,a.ply,,x\n", header="sample_id,gt_mesh,occlusion,category\n"))
    m = load_manifest(_csv(tmp_path, "a,a.ply,0.5,\n", header="sample_id,gt_mesh,occlusion,category\n"))
    assert list(m["occlusion"]) == [0.5] and list(m["category"]) == [""] and "domain" not in m.columns


def test_reserved_column_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="status"):
        load_manifest(_csv(tmp_path, "a,a.ply,real,0,x,ok\n", header="sample_id,gt_mesh,domain,occlusion,category,status\n"))


def test_unreadable_encoding_names_the_line(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(HEADER.encode() + b"a,i.png,m.png,a.ply,synthetic,0.1,caf\xe9,1\n")
    with pytest.raises(ManifestError, match=r"line 2: not UTF-8"):
        load_manifest(path)


def test_bad_jsonl_line_and_camera(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"sample_id": "a", "gt_mesh": "a.ply", "domain": "real", "occlusion": 0, "category": "c"}\n{oops\n')
    with pytest.raises(ManifestError, match="line 2: not valid JSON"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="line 2 .*camera is not valid JSON"):
        load_manifest(_csv(tmp_path, "a,a.ply,real,0,c,{bad\n", header="sample_id,gt_mesh,domain,occlusion,category,camera\n"))


def test_missing_file_folder_and_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_manifest(tmp_path / "none.csv")
    with pytest.raises(ManifestError, match="must be a file"):
        load_manifest(tmp_path)
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(ManifestError, match="unsupported manifest format '.xlsx'"):
        load_manifest(tmp_path / "m.xlsx")


def test_absolute_path_inside_the_folder_is_fine(tmp_path):
    inside = pathlib.Path(tmp_path, "gt", "a.ply")
    m = load_manifest(_csv(tmp_path, f"a,i.png,m.png,{inside},synthetic,0,x,1\n"))
    assert m["gt_mesh"][0] == str(inside)


@pytest.mark.parametrize("value, shown", [("true", "True"), ("false", "False")])
def test_boolean_occlusion_is_not_a_number(tmp_path, value, shown):
    path = tmp_path / "m.jsonl"
    path.write_text('{"sample_id": "a", "gt_mesh": "a.ply", "occlusion": 0.5}\n'
                    f'{{"sample_id": "b", "gt_mesh": "b.ply", "occlusion": {value}}}\n')
    with pytest.raises(ManifestError, match=f"line 2 \\(sample 'b'\\): occlusion must be a number in \\[0, 1\\], got {shown}"):
        load_manifest(path)
    # a CSV column of True/False is parsed as booleans by pandas: refused as well
    with pytest.raises(ManifestError, match=f"occlusion must be a number in \\[0, 1\\], got {shown}"):
        load_manifest(_csv(tmp_path, f"a,a.ply,{shown}\n", header="sample_id,gt_mesh,occlusion\n"))


@pytest.mark.parametrize("sid, code", [("a\x00b", "U+0000"), ("evil\u202etxt.ply", "U+202E RIGHT-TO-LEFT OVERRIDE"),
                                       ("tab\there", "U+0009"), ("zero\u200bwidth", "U+200B ZERO WIDTH SPACE"),
                                       ("iso\u2066late", "U+2066 LEFT-TO-RIGHT ISOLATE"), ("c1\x85x", "U+0085")])
def test_sample_ids_with_control_or_bidi_characters_are_refused(tmp_path, sid, code):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"sample_id": "ok", "gt_mesh": "a.ply"}) + "\n"
                    + json.dumps({"sample_id": sid, "gt_mesh": "b.ply"}) + "\n")
    with pytest.raises(ManifestError, match="control or invisible") as exc:
        load_manifest(path)
    msg = str(exc.value)
    assert "m.jsonl: line 2: sample_id" in msg and code in msg and "\n" not in msg
    assert exc.value.line == 2 and exc.value.sample_id == sid
    # printable text of any script stays fine (spaces too, as before)
    path.write_text(json.dumps({"sample_id": "chaise longue é 椅子", "gt_mesh": "a.ply"}) + "\n")
    assert list(load_manifest(path)["sample_id"]) == ["chaise longue é 椅子"]


@pytest.mark.parametrize("camera, where", [('{"K": [1.0, NaN, 0.5]}', "camera.K[1]"), ('{"f": Infinity}', "camera.f"),
                                           ('{"pose": {"t": [0, -Infinity]}}', "camera.pose.t[1]"),
                                           ('{"f": 1e999}', "camera.f")])
def test_camera_with_non_finite_numbers_is_refused(tmp_path, camera, where):
    path = tmp_path / "m.jsonl"
    path.write_text('{"sample_id": "a", "gt_mesh": "a.ply", "camera": {"f": 1.5}}\n'
                    f'{{"sample_id": "b", "gt_mesh": "b.ply", "camera": {camera}}}\n')
    with pytest.raises(ManifestError, match=r"line 2 \(sample 'b'\): " + re.escape(where) + " is not a finite number"):
        load_manifest(path)
    csv = _csv(tmp_path, "a,a.ply,\"{\"\"f\"\": NaN}\"\n", header="sample_id,gt_mesh,camera\n")
    with pytest.raises(ManifestError, match="camera.f is not a finite number"):
        load_manifest(csv)


def test_a_symlink_cannot_lead_outside_the_folder(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "secret"
    data.mkdir(), outside.mkdir()
    (outside / "key.ply").write_text("x")
    (data / "gt").mkdir()
    (data / "gt" / "real.ply").write_text("x")
    (data / "escape").symlink_to(outside, target_is_directory=True)  # a folder link pointing out
    (data / "key.ply").symlink_to(outside / "key.ply")  # a file link pointing out
    (data / "inner").symlink_to(data / "gt", target_is_directory=True)  # a link that stays inside
    for value in ("escape/key.ply", "key.ply", "escape/missing.ply"):
        with pytest.raises(ManifestError, match="symbolic link") as exc:
            load_manifest(_csv(data, f"a,{value}\n", header="sample_id,gt_mesh\n"))
        assert f"gt_mesh path '{value}' resolves through a symbolic link to" in str(exc.value)
        assert str(outside) in str(exc.value) and "outside the manifest's folder" in str(exc.value)
    m = load_manifest(_csv(data, "a,inner/real.ply\n", header="sample_id,gt_mesh\n"))
    assert m["gt_mesh"][0] == str(data / "inner" / "real.ply")  # kept as written, the link inside is fine


def test_ids_may_hold_the_joiners_that_some_scripts_need(tmp_path):
    """Zero-width non-joiner and joiner (U+200C, U+200D) spell Persian, Indic and emoji names; the other
    invisible formatting characters stay refused."""
    (tmp_path / "a.ply").write_text("ply\n")
    ok = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    (tmp_path / "m.jsonl").write_text(json.dumps({"sample_id": ok, "gt_mesh": "a.ply"}) + "\n", encoding="utf-8")
    assert load_manifest(tmp_path / "m.jsonl")["sample_id"].tolist() == [ok]
    (tmp_path / "m.jsonl").write_text(json.dumps({"sample_id": "a\u200bb", "gt_mesh": "a.ply"}) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="U\\+200B"):
        load_manifest(tmp_path / "m.jsonl")


# --- the typed Manifest ----------------------------------------------------------------------------------


def test_manifest_read_select_and_split_keep_validated_rows(tmp_path):
    from sam3d_eval.data.manifest import Manifest

    path = _csv(tmp_path, "007,,,gt/a.ply,synthetic,0.25,chair,lab1\nb,,,gt/b.obj,real,1,table,lab2\n"
                          "c,,,gt/c.obj,real,0,table,lab1\n",
                header="sample_id,image,mask,gt_mesh,domain,occlusion,category,source_lab\n")
    m = Manifest.read(path)
    assert m.sample_ids == ["007", "b", "c"] and all(isinstance(s, str) for s in m.sample_ids)
    assert m.path == path and m.root == tmp_path and len(m) == 3
    assert m.strata == ["domain", "occlusion", "category", "source_lab"]
    sub = m.select({"c", "007"})
    assert sub.sample_ids == ["007", "c"]  # manifest order, not the set's
    assert sub.path == path and sub.frame.attrs["root"] == str(tmp_path)
    assert list(sub.frame.index) == [0, 1]
    assert m.select((m.frame["domain"] == "real").to_numpy()).sample_ids == ["b", "c"]
    with pytest.raises(KeyError, match="zzz"):
        m.select(["zzz"])
    assert m.split("test") is m  # no split column: every row


def test_manifest_from_a_frame_is_validated_by_the_same_rules(tmp_path):
    from sam3d_eval.data.manifest import Manifest, as_manifest

    good = pd.DataFrame({"sample_id": ["a", "b"], "gt_mesh": ["gt/a.ply", str(tmp_path / "b.ply")],
                         "domain": ["Synthetic", "real"]})
    m = Manifest(good)  # built in Python: relative paths from the working directory, any folder
    assert m.frame["gt_mesh"][0] == str(pathlib.Path.cwd() / "gt" / "a.ply")
    assert list(m.frame["domain"]) == ["synthetic", "real"]  # normalised like a file's rows
    assert as_manifest(m) is m and as_manifest(good).sample_ids == ["a", "b"]
    with pytest.raises(ManifestError, match="duplicate sample_id"):
        Manifest(pd.DataFrame({"sample_id": ["a", "a"], "gt_mesh": ["x.ply", "y.ply"]}))
    with pytest.raises(ManifestError, match="leaves"):  # with a root, paths must stay inside it
        Manifest(pd.DataFrame({"sample_id": ["a"], "gt_mesh": ["../x.ply"]}), tmp_path)


def test_find_pairs_builds_its_manifest_through_the_same_constructor(tmp_path):
    from sam3d_eval.data.manifest import Manifest
    from sam3d_eval.evaluate.sources import find_pairs

    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for name in ("a.ply", "b.obj"):
        (tmp_path / "gt" / name).write_text("x")
        (tmp_path / "pred" / name).write_text("x")
    (tmp_path / "pred" / "orphan.ply").write_text("x")
    m, source, orphans = find_pairs(tmp_path / "pred", tmp_path / "gt")
    assert isinstance(m, Manifest) and m.sample_ids == ["a", "b"] and orphans == ["orphan"]
    assert m.frame["gt_mesh"][1] == str(tmp_path / "gt" / "b.obj")
    (tmp_path / "gt" / "bad\u202eid.ply").write_text("x")  # a stem that is no valid sample id
    with pytest.raises(ManifestError, match="invisible"):
        find_pairs(tmp_path / "pred", tmp_path / "gt")
