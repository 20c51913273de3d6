"""Content keys of a sample: when a stored result may be reused.

Every stored result row records three SHA-256 keys (columns `CONTENT_COLUMNS`):

- ``pred_sha256``: what the prediction is made from (`PredictionSource.content_hash`: the prediction
  file's bytes, or a model's identity with its image and mask bytes);
- ``gt_sha256``: the ground-truth file's bytes (`io.hashing.mesh_sha256`: with an OBJ's materials and
  textures, a glTF's buffers and images);
- ``row_sha256``: the manifest row without its path columns (`manifest_row_sha256`): the sample id, its
  strata (domain, occlusion, category, pair id, ...) and its camera. Paths are left out on purpose: moving
  a data set changes no number, and the files' own hashes cover their content.

A stored row is *fresh* for a manifest row when its source identity and protocol fingerprint are the ones
asked for, its status is ok, and all three keys equal the ones computed now (`sample_keys`); only fresh rows
are reused (`split_stored`). Anything else (an overwritten prediction, a swapped ground truth, an edited
manifest row, a row stored before keys were recorded) is scored again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..data.manifest import PATH_COLUMNS
from ..io.hashing import json_sha256
from ..io.results import CONTENT_COLUMNS
from .sources import PredictionSource, gt_content_hash

__all__ = ["CONTENT_COLUMNS", "SampleKey", "changed_ids", "manifest_row_sha256", "sample_keys", "split_stored"]


@dataclass(frozen=True)
class SampleKey:
    """The three content keys of one sample (module docstring), hex SHA-256 strings.

    Attributes:
        pred_sha256: key of what the prediction is made from (`PredictionSource.content_hash`).
        gt_sha256: key of the ground-truth mesh and the files it references (`NO_FILE` when none or unreadable).
        row_sha256: key of the manifest row without its path columns (`manifest_row_sha256`).
    """

    pred_sha256: str
    gt_sha256: str
    row_sha256: str

    def as_tuple(self) -> tuple[str, str, str]:
        """The keys in the order of `CONTENT_COLUMNS`.

        Returns:
            `(pred_sha256, gt_sha256, row_sha256)`.
        """
        return (self.pred_sha256, self.gt_sha256, self.row_sha256)


def manifest_row_sha256(row: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest row's canonical JSON without its path columns (`data.manifest.PATH_COLUMNS`:
    ``gt_mesh``, ``image``, ``mask``, ``gt_mesh_unworn``), so the same row read from CSV, JSONL or Parquet
    at any location hashes the same when its values are the same.

    Args:
        row: one manifest row, column name -> value (keys are compared as `str`; NaN and inf hash as null).

    Returns:
        64-character lower-case hex SHA-256 string.
    """
    return json_sha256({str(k): v for k, v in row.items() if k not in PATH_COLUMNS})


def _mask_sha256(path: Any) -> str:
    """`io.hashing.file_sha256` of a row's ``mask``, or a marker without one (or when it cannot be read)."""
    from ..io.hashing import file_sha256

    if path is None or (isinstance(path, float) and path != path) or not str(path).strip():
        return "no mask"
    try:
        return file_sha256(path)
    except OSError:
        return "unreadable mask"


def sample_keys(rows: Iterable[Mapping[str, Any]], source: PredictionSource, *,
                mask_content: bool = False) -> dict[str, SampleKey]:
    """``{sample_id: SampleKey}`` of manifest rows for `source`: reads (hashes) every prediction and
    ground-truth file once.

    Args:
        rows: manifest rows, each a mapping with at least `sample_id` (and usually `gt_mesh`; a missing or
            unreadable one is keyed `NO_FILE`).
        source: the prediction source whose `content_hash(row)` gives each row's prediction key.
        mask_content: fold the bytes of each row's ``mask`` file into its row key (a protocol with the
            visibility split scores against the mask, so a changed mask must rescore the row). Default False.

    Returns:
        Dict from `str(sample_id)` to its `SampleKey`, in row order; a repeated id keeps its last row.

    Raises:
        KeyError: a row has no `sample_id`.
    """
    def row_key(r):
        if not mask_content:
            return manifest_row_sha256(r)
        return json_sha256({"row": manifest_row_sha256(r), "mask_sha256": _mask_sha256(r.get("mask"))})

    return {str(r["sample_id"]): SampleKey(source.content_hash(r), gt_content_hash(r.get("gt_mesh")), row_key(r))
            for r in rows}


def split_stored(stored, keys: Mapping[str, SampleKey], identity: str, fingerprint: str) -> tuple[set[str], set[str]]:
    """(fresh, stale) sample ids of a stored results frame (`io.read_results`, deduplicated) for the samples
    of `keys`: fresh rows are ok and keyed as now under `identity` and `fingerprint`; stale ones are ok rows
    whose keys differ (or were never recorded). Failed rows are neither: they are retried (a failure may not
    come from the inputs: memory, a device).

    Args:
        stored: the stored results frame with `source`, `fingerprint`, `status`, `sample_id` and, once keys are
            recorded, the `CONTENT_COLUMNS`; None or an empty frame means nothing is stored.
        keys: `{sample_id: SampleKey}` computed now (`sample_keys`); only these samples are considered.
        identity: the prediction source's identity string to match the `source` column.
        fingerprint: the protocol fingerprint to match the `fingerprint` column.

    Returns:
        `(fresh, stale)` sets of sample ids; a row stored without all three key columns is stale.

    Raises:
        KeyError: a non-empty `stored` lacks one of `source`, `fingerprint`, `status` or `sample_id`.
    """
    if stored is None or not len(stored):
        return set(), set()
    mine = stored[(stored["source"] == identity) & (stored["fingerprint"] == fingerprint)
                  & (stored["status"] == "ok") & stored["sample_id"].isin(set(keys))]
    cols = [c for c in CONTENT_COLUMNS if c in mine.columns]
    fresh, stale = set(), set()
    for rec in mine[["sample_id", *cols]].itertuples(index=False):
        sid = rec[0]
        got = tuple(rec[1:]) if len(cols) == len(CONTENT_COLUMNS) else None
        (fresh if got == keys[sid].as_tuple() else stale).add(sid)
    return fresh, stale


def changed_ids(stored, keys: Mapping[str, SampleKey], identity: str, fingerprint: str) -> set[str]:
    """Sample ids of `keys` whose stored row (any status) under `identity` and `fingerprint` is keyed otherwise
    than now, or was stored without keys, or is missing.

    Args:
        stored: the stored results frame (as for `split_stored`); None or empty means nothing is stored.
        keys: `{sample_id: SampleKey}` computed now.
        identity: the prediction source's identity string.
        fingerprint: the protocol fingerprint.

    Returns:
        Set of sample ids from `keys` whose stored keys differ, are absent, or that have no stored row; every
        id of `keys` when nothing is stored.

    Raises:
        KeyError: a non-empty `stored` lacks one of `source`, `fingerprint` or `sample_id`.
    """
    if stored is None or not len(stored):
        return set(keys)
    mine = stored[(stored["source"] == identity) & (stored["fingerprint"] == fingerprint)
                  & stored["sample_id"].isin(set(keys))]
    cols = [c for c in CONTENT_COLUMNS if c in mine.columns]
    same = set()
    if len(cols) == len(CONTENT_COLUMNS):
        for rec in mine[["sample_id", *cols]].itertuples(index=False):
            if tuple(rec[1:]) == keys[rec[0]].as_tuple():
                same.add(rec[0])
    return set(keys) - same
