"""Named, versioned evaluation protocols: the registry of presets (docs/definitions.md).

Published single-image-to-3D numbers differ in normalisation, alignment, sample count, Chamfer variant and
F-score thresholds. A `Protocol` pins all of them, and the appearance settings (views, elevations, image
size, LPIPS network), under a name and a version; it is stored with every result (`Protocol.record()`:
`to_dict()` plus `fingerprint()`) and printed above every report. `evaluate.scoring.score_batch` runs one.
`load_protocol` gives a preset by name or reads a protocol file (TOML or JSON: a preset and the fields it
changes, recorded as overrides; see `load_protocol`).

Chamfer variants (`CHAMFER_VARIANTS`; d = Euclidean distance to the nearest point of the other sample):

- ``"chamfer_l2_p3d"`` -> column ``chamfer_l2``: mean d^2 pred->GT + mean d^2 GT->pred (pytorch3d
  `chamfer_distance`, Mesh R-CNN's "Chamfer-L2").
- ``"chamfer_l1"`` -> ``chamfer_l1``: (mean d pred->GT + mean d GT->pred) / 2, unsquared ("CD-L1" of
  ZeroShape / SyncDreamer).
- ``"occnet"`` -> ``chamfer_l1_occnet`` and ``chamfer_l2_occnet``: Occupancy Networks' halves of both,
  (accuracy + completeness) / 2 with d and with d^2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

from ..config_io import check_keys, dataclass_from_mapping, read_config_file, value_kind

__all__ = [
    "ALIGNMENTS",
    "APPEARANCE_METRICS",
    "CHAMFER_VARIANTS",
    "INPUT_VIEW_METRICS",
    "METRICS",
    "NORMALIZATIONS",
    "PROTOCOLS",
    "Protocol",
    "ROLES",
    "PROTOCOL_FILE_KEYS",
    "VISIBILITY_PARTS",
    "get_protocol",
    "load_protocol",
    "protocol_from_settings",
]

# The names of `ops.alignment.ALIGNMENTS`, written out so that reading the presets (`sam3d-eval protocols`)
# loads no torch; tests/test_protocols.py keeps the two equal.
ALIGNMENTS = ("none", "bbox", "icp", "scale_icp", "rotation_search_icp")
# The start grid every preset uses; other names are checked by `ops.alignment.rotation_grid` (loads torch).
_DEFAULT_ROTATIONS = "cube24"
NORMALIZATIONS = {
    "none": "none (file / camera frame)",
    "gt_bbox_unit_cube": "both jointly: GT bbox centred at the origin, longest side 1 (fits [-0.5, 0.5]^3)",
    "gt_bbox_longest_10": "both jointly: GT bbox centred, longest side 10 (Mesh R-CNN 'gt-10')",
    "each_bbox_minus1_1": "each shape on its own: bbox centred, longest side 2 (fits [-1, 1]^3)",
    "each_mean_xy_extent": "each sampled cloud on its own: centred at its mean, divided by the larger of its x and y extents",
}
CHAMFER_VARIANTS = {
    "chamfer_l2_p3d": ("chamfer_l2",),
    "chamfer_l1": ("chamfer_l1",),
    "occnet": ("chamfer_l1_occnet", "chamfer_l2_occnet"),
}
# Metric names a protocol may ask for; `evaluate.scoring.METRIC_FUNCTIONS` holds one function per name.
# "visibility" splits accuracy, completeness and recall by what the input camera sees (docs/definitions.md,
# "Visible and hidden surfaces"); no preset asks for it (add it with `with_overrides(metrics=...)` or a file).
METRICS = ("chamfer", "fscore", "normal_consistency", "normal_consistency_signed", "volume_iou", "emd", "visibility")
APPEARANCE_METRICS = ("lpips", "psnr", "ssim", "silhouette_iou")
# Appearance from the input camera (rows with a camera): the same figures from that one view.
INPUT_VIEW_METRICS = ("psnr_input", "ssim_input", "silhouette_iou_input")
# The parts of the GT surface the visibility split scores, in label order (`ops.visibility.VISIBILITY_LABELS`).
VISIBILITY_PARTS = ("visible", "self_hidden", "occluder_hidden")
# The random streams of one sample (`seeding.stream_seed(protocol.seed, sample_id, role)`).
ROLES = ("gt_surface", "pred_surface", "pred_splat", "align_subset", "emd")
VOLUME_BOUNDS = {
    "joint_bbox": "the pair's joint bounding box",
    "padded_unit_cube": "the unit cube padded by 0.1, [-0.55, 0.55]^3 (Occupancy Networks' evaluation box)",
}
LPIPS_NETS = ("alex", "vgg")
_OVERRIDABLE = ("num_samples", "taus", "seed", "alignment", "align_points", "icp_iterations", "emd_points",
                "voxel_resolution", "appearance_views", "appearance_image_size", "lpips_net", "metrics")
# Fields that describe a protocol but never change a number: left out of the fingerprint.
_DESCRIPTIVE = ("source",)


@dataclass(frozen=True)
class Protocol:
    """A named, versioned recipe for comparing a predicted shape with its ground truth.

    name, version: identify the recipe; any change of numbers is a new version.
    alignment: one of `alignment.ALIGNMENTS`; normalization: a key of `NORMALIZATIONS`.
    num_samples: points sampled per surface; seed: base seed of every random stream of a sample
        (`seeding.stream_seed(seed, sample_id, role)`, roles in `ROLES`).
    chamfer: variants (keys of `CHAMFER_VARIANTS`); taus: F-score thresholds in normalised units.
    metrics: subset of `METRICS` to compute.
    align_points: points per sample used to estimate the alignment; icp_iterations, icp_tolerance,
        rotations: ICP steps, relative RMSE stop, start grid of the rotation search.
    voxel_resolution, volume_method, volume_bounds: volume IoU grid (cells per axis), inside test
        ("winding" | "parity") and grid box (a key of `VOLUME_BOUNDS`); emd_points: EMD subsample size.
    appearance_views, appearance_elevations, appearance_image_size, appearance_distance, appearance_fov,
        lpips_net: the appearance renders: V views at azimuths 360 v / V degrees with the elevations
        (degrees) cycled over the views, square images of that side, cameras at `appearance_distance`
        GT-box sides from the GT box centre with that vertical field of view (degrees), LPIPS backbone.
    source: where the recipe comes from and what to know before comparing with it (never changes a number).
    overrides: `(field, value)` pairs changed from the preset.

    Raises:
        ValueError: on construction, for an unknown alignment, normalization, Chamfer variant, metric, volume
            method or bounds, LPIPS net or rotation grid; a metric listed twice; a count below 1; a tau that is not positive; fscore
            without taus or chamfer without variants; no appearance view or elevation; an image side below 11;
            or appearance_distance <= 0 or appearance_fov outside (0, 180).
    """

    name: str
    version: str
    alignment: str
    normalization: str
    num_samples: int
    seed: int
    chamfer: tuple[str, ...]
    taus: tuple[float, ...]
    metrics: tuple[str, ...]
    align_points: int = 20_000
    icp_iterations: int = 30
    icp_tolerance: float = 1e-6
    rotations: str = "cube24"
    voxel_resolution: int = 64
    volume_method: str = "winding"
    volume_bounds: str = "joint_bbox"
    emd_points: int = 2048
    appearance_views: int = 8
    appearance_elevations: tuple[float, ...] = (15.0, 45.0)
    appearance_image_size: int = 256
    appearance_distance: float = 2.8
    appearance_fov: float = 40.0
    lpips_net: str = "alex"
    source: str = ""
    overrides: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"protocol {self.name!r}"
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"{where}: unknown alignment {self.alignment!r}; expected one of {', '.join(ALIGNMENTS)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"{where}: unknown normalization {self.normalization!r}; expected one of {', '.join(NORMALIZATIONS)}")
        bad = [c for c in self.chamfer if c not in CHAMFER_VARIANTS] + [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"{where}: unknown chamfer variants or metrics {bad}; "
                             f"variants {list(CHAMFER_VARIANTS)}, metrics {list(METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"{where}: metrics lists a name twice: {list(self.metrics)}")
        if min(self.num_samples, self.align_points, self.emd_points, self.icp_iterations, self.voxel_resolution) < 1:
            raise ValueError(f"{where}: num_samples, align_points, emd_points, icp_iterations and voxel_resolution must be positive")
        if any(not (t > 0) for t in self.taus):
            raise ValueError(f"{where}: taus must be positive, got {list(self.taus)}")
        if "fscore" in self.metrics and not self.taus:
            raise ValueError(f"{where}: fscore needs at least one tau")
        if self.volume_method not in ("winding", "parity"):
            raise ValueError(f"{where}: volume_method must be 'winding' or 'parity', got {self.volume_method!r}")
        if self.volume_bounds not in VOLUME_BOUNDS:
            raise ValueError(f"{where}: volume_bounds must be one of {', '.join(VOLUME_BOUNDS)}, got {self.volume_bounds!r}")
        if self.rotations != _DEFAULT_ROTATIONS:
            from ..ops.alignment import rotation_grid

            rotation_grid(self.rotations)  # raises for an unknown grid name
        if "chamfer" in self.metrics and not self.chamfer:
            raise ValueError(f"{where}: chamfer needs at least one variant")
        if self.appearance_views < 1 or not self.appearance_elevations:
            raise ValueError(f"{where}: appearance needs at least one view and one elevation")
        if self.appearance_image_size < 11:
            raise ValueError(f"{where}: appearance_image_size must be at least 11 (the SSIM window), got {self.appearance_image_size}")
        if not (self.appearance_distance > 0 and 0 < self.appearance_fov < 180):
            raise ValueError(f"{where}: appearance_distance must be positive and appearance_fov in (0, 180) degrees")
        if self.lpips_net not in LPIPS_NETS:
            raise ValueError(f"{where}: lpips_net must be one of {', '.join(LPIPS_NETS)}, got {self.lpips_net!r}")

    def with_overrides(self, **changes: Any) -> Protocol:
        """A copy with `changes` (None values ignored) applied and recorded in `overrides`.

        Args:
            **changes: new values of overridable fields (`num_samples`, `taus`, `seed`, `alignment`,
                `align_points`, `icp_iterations`, `emd_points`, `voxel_resolution`, `appearance_views`,
                `appearance_image_size`, `lpips_net`, `metrics`); None leaves a field as it is; `taus` is read
                as a tuple of floats, `metrics` as a tuple of names (e.g. ``metrics=(*p.metrics,
                "visibility")`` adds the visibility split).

        Returns:
            A new `Protocol` (same name and version) whose `overrides` record every field that changed, sorted
            by field name; `self` when no value differs from the current one.

        Raises:
            ValueError: a field that may not be overridden, or a value that `Protocol` refuses.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - set(_OVERRIDABLE))
        if unknown:
            raise ValueError(f"cannot override {unknown}; overridable: {', '.join(_OVERRIDABLE)}")
        return self._changed(changes)

    def _changed(self, changes: dict[str, Any]) -> Protocol:
        """`with_overrides` without the check of which fields may change (`load_protocol` checks its own)."""
        if "taus" in changes:
            changes["taus"] = tuple(float(t) for t in changes["taus"])
        if "metrics" in changes:
            if isinstance(changes["metrics"], str):
                raise ValueError(f"metrics must be a sequence of names, got the string {changes['metrics']!r}")
            changes["metrics"] = tuple(str(m) for m in changes["metrics"])
        changes = {k: v for k, v in changes.items() if v != getattr(self, k)}
        if not changes:
            return self
        recorded = dict(self.overrides)
        recorded.update(changes)
        return dataclasses.replace(self, **changes, overrides=tuple(sorted(recorded.items())))

    def columns(self) -> list[str]:
        """The headline metric names of a result row, in report order (precision/recall come in rows too).

        Returns:
            List of column names: the Chamfer columns of each variant, ``fscore@{tau:g}`` per tau, then
            normal_consistency, normal_consistency_signed, volume_iou and emd, each only when its metric is
            in `metrics`. Appearance and visibility columns are not included (`visibility_columns`;
            `evaluate.scoring.metric_names` lists every column).
        """
        cols: list[str] = []
        if "chamfer" in self.metrics:
            cols += [c for v in self.chamfer for c in CHAMFER_VARIANTS[v]]
        if "fscore" in self.metrics:
            cols += [f"fscore@{t:g}" for t in self.taus]
        cols += [m for m in ("normal_consistency", "normal_consistency_signed", "volume_iou", "emd") if m in self.metrics]
        return cols

    def visibility_columns(self) -> list[str]:
        """The metric columns of the visibility split (empty unless "visibility" is in `metrics`).

        Returns:
            ``chamfer_acc_visible``, then ``chamfer_comp_{part}`` and, when the protocol has taus,
            ``recall@{max tau:g}_{part}`` for each part of `VISIBILITY_PARTS` (visible, self_hidden,
            occluder_hidden).
        """
        if "visibility" not in self.metrics:
            return []
        cols = ["chamfer_acc_visible"] + [f"chamfer_comp_{part}" for part in VISIBILITY_PARTS]
        if self.taus:
            cols += [f"recall@{max(self.taus):g}_{part}" for part in VISIBILITY_PARTS]
        return cols

    def label(self) -> str:
        """`name vVERSION` plus any overrides, e.g. ``default v2 (overrides: num_samples=4000)``.

        Returns:
            The label string; tuple values are written comma-separated with ``:g`` formatting.
        """
        text = f"{self.name} v{self.version}"
        if self.overrides:
            text += " (overrides: " + ", ".join(f"{k}={_fmt_value(v)}" for k, v in self.overrides) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of every field (tuples as lists, overrides as a dict); `from_dict` inverts it.

        Returns:
            Dict of every field by name, `source` included; tuple fields as lists and `overrides` as
            ``{field: value}`` (tuple values as lists).
        """
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        out["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides}
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Protocol:
        """The protocol a `to_dict()` record describes (e.g. read back from a results store).

        Fields missing from the record take their defaults (records written before a field existed);
        unknown keys raise `ValueError` naming them, as does any invalid value.

        Args:
            record: a dict as `to_dict` (or `record`, without its ``"fingerprint"`` key) writes it: lists for
                tuple fields and a dict for `overrides`.

        Returns:
            The `Protocol`.

        Raises:
            ValueError: `record` is not a dict; `overrides` is not a dict; an unknown key (a ``"fingerprint"``
                key included); a required field missing (name, version, alignment, normalization,
                num_samples, seed, chamfer, taus, metrics); or a value `Protocol` refuses.
        """
        if not isinstance(record, dict):
            raise ValueError(f"a protocol record must be a dict, got {type(record).__name__}")

        def convert(kw: dict[str, Any]) -> dict[str, Any]:
            overrides = kw.pop("overrides", None) or {}
            if not isinstance(overrides, dict):
                raise ValueError(f"protocol record: overrides must be a dict, got {type(overrides).__name__}")
            kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items()}
            kw["overrides"] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()))
            return kw

        try:
            return dataclass_from_mapping(cls, record, where="protocol record", noun="fields", convert=convert)
        except TypeError as err:  # a required field missing
            raise ValueError(f"protocol record: {err}") from None

    def fingerprint(self) -> str:
        """A 16-hex-digit digest of every field that changes numbers (all but `source`), stable across
        processes and platforms: the SHA-256 of the canonical JSON (sorted keys, floats by `repr`).
        Computed once per instance (the fields are frozen).

        Returns:
            The first 16 lower-case hex digits of the SHA-256; integers and equal floats (1 and 1.0) give the
            same digest.

        Raises:
            ValueError: a numeric field is NaN or infinite.
        """
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            record = {k: v for k, v in self.to_dict().items() if k not in _DESCRIPTIVE}
            text = json.dumps(_canonical(record), sort_keys=True, separators=(",", ":"), allow_nan=False)
            cached = hashlib.sha256(text.encode()).hexdigest()[:16]
            object.__setattr__(self, "_fingerprint", cached)  # not a field: equality, hash, replace ignore it
        return cached

    def record(self) -> dict[str, Any]:
        """What a result stores about its protocol: `to_dict()` plus its ``"fingerprint"``.

        Returns:
            The `to_dict()` dict with an added ``"fingerprint"`` key (16 hex digits).

        Raises:
            ValueError: a numeric field is NaN or infinite (from `fingerprint`).
        """
        return {**self.to_dict(), "fingerprint": self.fingerprint()}


def _canonical(v: Any) -> Any:
    """Numbers in one form (1 and 1.0 are the same setting; floats as their shortest repr)."""
    if isinstance(v, dict):
        return {str(k): _canonical(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"protocol fields must be finite numbers, got {v!r}")
        return repr(f)
    return str(v)


def _fmt_value(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(x if isinstance(x, str) else f"{x:g}" for x in v)
    return str(v)


_V2 = ("v2: every random draw comes from a stream keyed by (seed, sample id, role), so a "
       "sample's numbers no longer depend on its batch; v1 numbers differ by sampling noise.")

PROTOCOLS: dict[str, Protocol] = {
    "default": Protocol(
        name="default", version="2", alignment="none", normalization="gt_bbox_unit_cube", num_samples=100_000, seed=0,
        chamfer=("chamfer_l2_p3d", "chamfer_l1"), taus=(0.01, 0.02, 0.05),
        metrics=("chamfer", "fscore", "normal_consistency"),
        source="The suite's default (docs/definitions.md): GT bbox to the unit cube jointly, no rotation alignment, 100k points, "
               "pytorch3d Chamfer-L2 (+ CD-L1), F@{0.01,0.02,0.05}, normal consistency. " + _V2,
    ),
    "sam3d": Protocol(
        name="sam3d", version="2", alignment="icp", normalization="each_bbox_minus1_1", num_samples=1_000_000, seed=0,
        chamfer=("chamfer_l2_p3d",), taus=(0.01,), metrics=("chamfer", "fscore", "volume_iou", "emd"),
        source="SAM 3D Objects (Meta, 2025) shape metrics on SA-3DAO as the paper reports them: shapes normalised "
               "to [-1,1], rigid ICP, 1M points, F1@0.01, voxel IoU 64^3, Chamfer, EMD. The paper does not say "
               "which Chamfer; pytorch3d's squared L2 is used. EMD on 2048-point subsamples (emd.py). "
               "CAUTION: each shape is normalised by its OWN axis-aligned box before ICP, so a pose error "
               "changes the prediction's scale and rigid ICP cannot undo a scale: a correct shape rotated by "
               "8 degrees loses (measured: a 2:1:0.5 box turned 8 degrees about its short axis, this preset "
               "with its 1M points: F1@0.01 1.00 -> 0.00; with "
               "alignment=scale_icp 1.00); compare with `scale_icp` or the default protocol before reading "
               "pose-sensitive gaps. " + _V2,
    ),
    "meshrcnn": Protocol(
        name="meshrcnn", version="2", alignment="none", normalization="gt_bbox_longest_10", num_samples=10_000, seed=0,
        chamfer=("chamfer_l2_p3d",), taus=(0.1, 0.3, 0.5),
        metrics=("chamfer", "fscore", "normal_consistency", "normal_consistency_signed"),
        source="Mesh R-CNN (Gkioxari et al. 2019), meshrcnn/utils/metrics.py compare_meshes(scale='gt-10'): "
               "GT bbox longest edge scaled to 10 (same scale on the prediction), 10k points, squared "
               "Chamfer-L2, normal consistency (abs and signed), F1@{0.1,0.3,0.5}. " + _V2,
    ),
    "occnet": Protocol(
        name="occnet", version="2", alignment="none", normalization="gt_bbox_unit_cube", num_samples=100_000, seed=0,
        chamfer=("occnet",), taus=(), metrics=("chamfer", "normal_consistency", "volume_iou"),
        voxel_resolution=47, volume_bounds="padded_unit_cube",
        source="Occupancy Networks (Mescheder et al. 2019) eval: unit cube, 100k points, Chamfer-L1 and "
               "Chamfer-L2 as halves of accuracy + completeness, normal consistency, and (new in v2) its "
               "headline volume IoU. OccNet counts inside/outside at 100k points drawn uniformly in the "
               "padded unit cube [-0.55, 0.55]^3; here the same box is covered by a regular 47^3 grid "
               "(103,823 cell centres) with the winding-number inside test: the same volume ratio, "
               "stratified instead of random (the inside test is grid-based; per-point winding numbers at "
               "100k random points cost points x faces). " + _V2,
    ),
    "zeroshape": Protocol(
        name="zeroshape", version="2", alignment="none", normalization="each_mean_xy_extent", num_samples=10_000, seed=0,
        chamfer=("chamfer_l1",), taus=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2), metrics=("chamfer", "fscore"),
        source="ZeroShape (Huang et al. 2024), utils/eval_3D.py + options/shape.yaml: each cloud centred at its "
               "mean and divided by max(x, y extent) (normalize_pc), no ICP (eval.icp: false), 10k points, "
               "CD-L1 = (acc + comp) / 2 unsquared, F@{0.005,0.01,0.02,0.05,0.1,0.2}. FRAME: ZeroShape "
               "applies normalize_pc to shapes expressed in the camera frame of the input view, so its 'x and "
               "y extent' is the extent in the image plane; this preset assumes predictions and GT are given "
               "in that camera frame and rotates nothing (in an object-centric frame the x/y extents, and so "
               "the scale, differ from ZeroShape's). " + _V2,
    ),
}


def get_protocol(name: str | Protocol) -> Protocol:
    """The preset called `name` (a `Protocol` passes through). Raises `ValueError` listing the presets.

    Args:
        name: a key of `PROTOCOLS` ("default", "sam3d", "meshrcnn", "occnet", "zeroshape") or a `Protocol`.
            Protocol files are not read here (see `load_protocol`).

    Returns:
        The preset `Protocol`, or `name` itself when it is one.

    Raises:
        ValueError: `name` is not a preset name.
    """
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}") from None


# ---------------------------------------------------------------------------------------------------------
# Protocol files

PROTOCOL_FILE_SUFFIXES = (".toml", ".json")
# A file cannot set these: the name and version are its base preset's, the changed fields are recorded as
# overrides by the loader, and `source` describes a preset (it is not part of the fingerprint).
_NOT_IN_FILES = ("name", "version", "source", "overrides")
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Protocol)}
# The keys a protocol file may hold: ``base`` (required) and every field of `Protocol` but `_NOT_IN_FILES`.
PROTOCOL_FILE_KEYS = ("base",) + tuple(n for n in _FIELD_TYPES if n not in _NOT_IN_FILES)


def load_protocol(spec: str | os.PathLike | Protocol) -> Protocol:
    """The protocol `spec` names: a preset name (`PROTOCOLS`), a protocol file, or a `Protocol` (as is).

    A protocol file (``.toml`` or ``.json``, one table / object) names a preset with ``base = "NAME"`` and
    may set any other field of `Protocol` except ``name``, ``version``, ``source`` and ``overrides``
    (`PROTOCOL_FILE_KEYS`); the fields it sets are applied to the preset and recorded in ``overrides``, as
    `Protocol.with_overrides` does, so the result keeps the preset's name and version and has the same
    fingerprint as the preset with those overrides (a file that only restates the preset's values gives the
    preset itself). See `protocol_from_settings` for the checks.

    TOML needs Python 3.11 (`tomllib`) or the ``tomli`` package.

    Args:
        spec: a preset name, a path (str or path-like) of a ``.toml`` / ``.json`` protocol file, or a
            `Protocol`, returned as is.

    Returns:
        The `Protocol`.

    Raises:
        FileNotFoundError: a protocol file path with a valid suffix that does not exist.
        ValueError: one line naming the file and the problem: an unknown name, a file with another suffix, a
            file that is not valid TOML/JSON (`config_io.read_config_file`), or any key or value
            `protocol_from_settings` refuses.
    """
    if isinstance(spec, Protocol):
        return spec
    text = os.fspath(spec)
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    path = pathlib.Path(text)
    if path.suffix.lower() not in PROTOCOL_FILE_SUFFIXES:
        if path.is_file():
            raise ValueError(f"{path}: a protocol file must be {' or '.join(PROTOCOL_FILE_SUFFIXES)}, "
                             f"not {path.suffix or 'a file without suffix'!r}")
        raise ValueError(f"unknown protocol {text!r}; available: {', '.join(PROTOCOLS)}, or a protocol file "
                         f"({', '.join(PROTOCOL_FILE_SUFFIXES)})")
    return protocol_from_settings(read_config_file(path, what="protocol file"), where=str(path))


def protocol_from_settings(settings: dict[str, Any], *, where: str = "protocol settings") -> Protocol:
    """The protocol a file's settings describe: preset ``settings["base"]`` with the other keys applied and
    recorded as overrides (see `load_protocol`).

    Checks, each a `ValueError` of one line starting with `where`: ``base`` present and a preset name;
    no unknown key (the message lists `PROTOCOL_FILE_KEYS`); each value of its field's type (str, integer,
    number, or a list of those; integers are accepted for numbers, never booleans; numbers finite); then
    every check of `Protocol` itself (alignment, normalisation, metrics, positive counts, ...).

    Args:
        settings: the file's table: ``base`` (a preset name) and fields of `Protocol` other than name,
            version, source and overrides (`PROTOCOL_FILE_KEYS`); lists for tuple fields.
        where: prefix of every error message, usually the file's path. Default "protocol settings".

    Returns:
        The base preset with the settings applied and recorded in `overrides`; the preset itself when every
        value equals the preset's.

    Raises:
        ValueError: `settings` is not a dict, or any of the checks above fails.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: protocol settings must be a table of fields, got {value_kind(settings)}")
    fixed = [k for k in settings if k in _NOT_IN_FILES]
    if fixed:
        raise ValueError(f"{where}: {', '.join(map(repr, fixed))} cannot be set in a protocol file (the name and "
                         "version are the base preset's; the fields set are recorded as overrides); valid keys: "
                         f"{', '.join(PROTOCOL_FILE_KEYS)}")
    check_keys(settings, PROTOCOL_FILE_KEYS, where=where)
    base = settings.get("base")
    if base is None:
        raise ValueError(f'{where}: a protocol file names the preset it starts from with base = "NAME" (one of '
                         f"{', '.join(PROTOCOLS)}); its other keys change that preset's fields")
    if not isinstance(base, str) or base not in PROTOCOLS:
        raise ValueError(f"{where}: base must be a preset name, one of {', '.join(PROTOCOLS)}; got {_shown(base)}")
    changes = {k: _typed(k, v, where) for k, v in settings.items() if k != "base"}
    try:
        return PROTOCOLS[base]._changed(changes)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _shown(v: Any) -> str:
    text = repr(v)
    return f"{value_kind(v)} {text if len(text) <= 60 else text[:57] + '...'}"


def _typed(name: str, value: Any, where: str) -> Any:
    """`value` checked against the type of field `name` (tuples from lists, numbers as float)."""
    annotation = str(_FIELD_TYPES[name])

    def scalar(v: Any, kind: str) -> Any:
        if kind == "str" and isinstance(v, str):
            return v
        if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if kind == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ValueError(f"{where}: {name} must be finite, got {v!r}")
            return float(v)
        return None

    words = {"str": "a string", "int": "an integer", "float": "a number"}
    if annotation in words:
        out = scalar(value, annotation)
        if out is None:
            raise ValueError(f"{where}: {name} must be {words[annotation]}, got {_shown(value)}")
        return out
    kind = annotation.removeprefix("tuple[").removesuffix(", ...]")
    if kind not in words or not annotation.startswith("tuple["):
        raise TypeError(f"protocol field {name} has type {annotation}, which protocol files do not support")
    items = [scalar(v, kind) for v in value] if isinstance(value, list) else None
    if items is None or any(v is None for v in items):
        plural = {"str": "strings", "int": "integers", "float": "numbers"}[kind]
        raise ValueError(f"{where}: {name} must be a list of {plural}, got {_shown(value)}")
    return tuple(items)
