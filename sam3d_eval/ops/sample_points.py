"""Area-uniform random points on the surfaces of a ragged mesh batch (pytorch3d `sample_points_from_meshes`).

Semantics match pytorch3d: a face is drawn with probability proportional to its area, a point uniformly
inside it from barycentrics `(1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v)`, and meshes that cannot be sampled
get zeros. The face draw is an inverse-CDF lookup on the float64 cumulative areas of the whole packed batch
(one search for all meshes, see `_inverse_cdf`), which has the same distribution as pytorch3d's
`torch.multinomial` and is several times faster on CPU.

Randomness: one `seed` / `generator` for the whole batch (pytorch3d's behaviour: a mesh's points then depend
on the meshes drawn before it), or a sequence of them, one per mesh, so that each mesh's points depend on its
own stream only and are bitwise the same whether it is sampled alone or in any batch (the evaluation draws
each sample's points from `seeding.torch_generator(seed, sample_id, role)` this way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..structures.meshes import Meshes
from ..structures.textures import TexturesUV, TexturesVertex
from ..transforms import face_areas_normals
from .texture_lookup import sample_uv

SeedLike = int | Sequence[int] | None
GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


def _generator(seed: int | None, generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    if seed is not None:
        return torch.Generator(device=device).manual_seed(int(seed))
    return generator


def _per_mesh(seed: SeedLike, generator: GeneratorLike, num_meshes: int) -> list | None:
    """One seed or generator per mesh when a sequence was given (checked against the batch size), else None."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    for name, value in (("seed", seed), ("generator", generator)):
        if value is not None and not isinstance(value, (int, np.integer, torch.Generator)):
            values = list(value)
            if len(values) != num_meshes:
                raise ValueError(f"{name}: got {len(values)} for {num_meshes} meshes; give one per mesh or a single one")
            return values
    return None


def _inverse_cdf(cum: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Index of the first entry of the ascending `cum` `(F,)` greater than each `x` `(N,)` (x < cum[-1]).

    A guide table (the first index past each of F equal slices of [0, cum[-1]]) narrows every query to a
    few candidates, then a vectorised binary search finishes: ~4x faster than a plain binary search over
    all F for random queries, and the same answer exactly.
    """
    num = cum.shape[0]
    total = cum[-1]
    edges = torch.arange(num + 1, dtype=cum.dtype, device=cum.device) * (total / num)
    if cum.device.type == "cpu":  # numpy's search is much faster than torch's on CPU
        guide = torch.from_numpy(np.searchsorted(cum.numpy(), edges.numpy(), side="right"))
    else:
        guide = torch.searchsorted(cum, edges, right=True)
    guide = guide.clamp_(max=num - 1)
    bucket = (x * (num / total)).long().clamp_(0, num - 1)
    # Widen by one slice each side so rounding in the slice arithmetic cannot exclude the answer.
    lo = guide.index_select(0, (bucket - 1).clamp_(min=0))
    hi = guide.index_select(0, (bucket + 2).clamp_(max=num))
    steps = int((hi - lo).max()).bit_length() if x.numel() else 0
    for _ in range(steps):
        mid = (lo + hi) >> 1
        right = cum.index_select(0, mid) <= x
        lo = torch.where(right, mid + 1, lo)
        hi = torch.where(right, hi, mid)
    return lo


def _fill(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`(Bv, S, C)` values of the valid meshes to `(B, S, C)` with zeros for the others."""
    if values.shape[0] == valid.shape[0]:
        return values
    out = values.new_zeros(valid.shape[0], *values.shape[1:])
    out[valid] = values
    return out


def _sample_uv_textures(
    tex: TexturesUV, valid_ids: list[int], first_face: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """`(Bv, S, C)` colours looked up from each valid mesh's UV map at the sampled barycentrics.

    Same convention as `render.interpolate.sample_textures` (`texture_lookup.sample_uv`).
    """
    out = []
    for row, b in enumerate(valid_ids):
        local = face_idx[row] - first_face[b]  # (S,) faces of mesh b in its own numbering
        corner_uv = tex.verts_uvs[b][tex.faces_uvs[b][local]]  # (S, 3, 2)
        uv = (bary[row, :, :, None] * corner_uv).sum(1)
        out.append(sample_uv(tex.maps[b], uv))
    return torch.stack(out, 0)


def sample_points_from_meshes(
    meshes: Meshes,
    num_samples: int = 10000,
    return_normals: bool = False,
    return_textures: bool = False,
    seed: SeedLike = None,
    generator: GeneratorLike = None,
    face_order: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Sample `num_samples` points uniformly by area from every mesh of the batch.

    Args:
        meshes: batch of B meshes.
        num_samples: points per mesh.
        return_normals: also return the unit normal of the face each point was drawn from.
        return_textures: also return the colour at each point: vertex features interpolated with the
            point's barycentrics (`TexturesVertex`) or a bilinear lookup in the UV map (`TexturesUV`).
        seed: seeds a private generator (same seed, same points; the global RNG is not touched); a
            sequence of B seeds gives every mesh its own generator (its points then do not depend on the
            rest of the batch).
        generator: a `torch.Generator` on the meshes' device to draw from instead (not with `seed`), or a
            sequence of B of them, one per mesh. With neither, the global RNG is used, as pytorch3d.
        face_order: return each mesh's points grouped by face in face-index order instead of in random
            order: the same distribution (the area positions are sorted uniform order statistics, drawn
            in O(S) from exponential spacings), but spatially coherent, which makes KD-tree builds and
            queries on them ~1.7x faster. Any prefix of such a sample is biased to the first faces: take
            evenly spread subsets, not the first k points.

    Returns:
        points `(B, num_samples, 3)`, and in this order when asked: normals `(B, num_samples, 3)`,
        textures `(B, num_samples, C)`. Meshes with no faces or zero total area get zeros (pytorch3d
        zero-fills meshes without faces and fails on zero-area ones). Points, normals and colours are
        differentiable w.r.t. vertex positions (and texture values); the face choice is not. Points and
        normals are in the vertices' dtype, textures too (converted).

    Raises:
        ValueError: if `num_samples` < 0, both `seed` and `generator` are given, a per-mesh sequence does
            not have B entries, no mesh has a face, a vertex is NaN/inf, textures are asked for but absent
            or unsupported, `TexturesVertex` rows do not match the vertices, or `TexturesUV` maps differ in
            channel count.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    streams = _per_mesh(seed, generator, len(meshes))
    if streams is not None:
        # Each mesh on its own with its own stream: bitwise independent of the rest of the batch.
        kw = dict(return_normals=return_normals, return_textures=return_textures, face_order=face_order)
        key = "seed" if seed is not None else "generator"
        parts = [
            None if meshes[b].isempty() else _sample_one(meshes[b], num_samples, kw, **{key: streams[b]})
            for b in range(len(meshes))
        ]
        filled = next((p for p in parts if p is not None), None)
        if filled is None:
            raise ValueError("meshes are empty: no faces to sample from")
        # A mesh without faces gets zeros, as in the batched draw.
        parts = [p if p is not None else tuple(torch.zeros_like(t) for t in filled) for p in parts]
        outs = [torch.cat(column, 0) for column in zip(*parts)]
        return outs[0] if len(outs) == 1 else tuple(outs)
    if meshes.isempty():
        raise ValueError("meshes are empty: no faces to sample from")
    verts = meshes.verts_packed()
    if not torch.isfinite(verts).all():
        raise ValueError("meshes contain NaN or inf vertex coordinates")
    if return_textures and meshes.textures is None:
        raise ValueError("meshes have no textures; pass TexturesVertex or TexturesUV to Meshes")
    device, dtype = verts.device, verts.dtype
    gen = _generator(seed, generator, device)
    faces = meshes.faces_packed()
    num_meshes = len(meshes)
    first_face = meshes.mesh_to_faces_packed_first_idx()

    face_areas, face_normals = face_areas_normals(verts, faces)
    with torch.no_grad():
        cum = torch.cumsum(face_areas.detach().to(torch.float64), 0)
        end = cum[first_face + meshes.num_faces_per_mesh() - 1].where(meshes.num_faces_per_mesh() > 0, cum.new_zeros(()))
        start = torch.cat([cum.new_zeros(1), cum])[first_face]
        total = end - start
        valid = (meshes.num_faces_per_mesh() > 0) & (total > 0) & torch.isfinite(total)
        valid_ids = valid.nonzero()[:, 0].tolist()
        nv = len(valid_ids)
        if face_order:
            # Normalised partial sums of S + 1 exponentials are the order statistics of S uniforms.
            e = torch.empty(nv, num_samples + 1, dtype=torch.float64, device=device).exponential_(generator=gen)
            c = torch.cumsum(e, dim=1)
            u = c[:, :-1] / c[:, -1:]
        else:
            u = torch.rand(nv, num_samples, generator=gen, dtype=torch.float64, device=device)
        x = start[valid, None] + u * total[valid, None]
        # Keep x strictly below the mesh's end so rounding can never select the next mesh's first face.
        x = torch.minimum(x, torch.nextafter(end[valid], end.new_full((), -float("inf")))[:, None])
        face_idx = _inverse_cdf(cum, x.reshape(-1)).reshape(nv, num_samples)
        r = torch.rand(2, nv, num_samples, generator=gen, dtype=dtype, device=device)
        su = r[0].sqrt()
        bary = torch.stack([1.0 - su, su * (1.0 - r[1]), su * r[1]], dim=-1)  # (Bv, S, 3)

    # index_select + explicit sums: 2-4x faster than advanced indexing and broadcast-sum on CPU.
    sample_faces = faces.index_select(0, face_idx.reshape(-1))  # (Bv * S, 3)
    tri = verts.index_select(0, sample_faces.reshape(-1)).reshape(nv, num_samples, 3, 3)
    w = bary.unsqueeze(-1)  # (Bv, S, 3, 1)
    out = [_fill(w[:, :, 0] * tri[:, :, 0] + w[:, :, 1] * tri[:, :, 1] + w[:, :, 2] * tri[:, :, 2], valid)]
    if return_normals:
        # transforms' face normals clamp |n| at 1e-6 (pytorch3d), which leaves tiny faces (area < 5e-7, e.g.
        # fine meshes in small units) with short normals; normalised again with the dtype's eps so every
        # sampled normal of a non-degenerate face is unit length (a zero-area face keeps a zero normal).
        n = face_normals / torch.linalg.vector_norm(face_normals, dim=1, keepdim=True).clamp(min=torch.finfo(dtype).eps)
        out.append(_fill(n.index_select(0, face_idx.reshape(-1)).reshape(nv, num_samples, 3), valid))
    if return_textures:
        tex = meshes.textures
        if isinstance(tex, TexturesVertex):
            feats = torch.cat([f.to(device) for f in tex.verts_features], 0)
            if feats.shape[0] != verts.shape[0]:
                raise ValueError(f"TexturesVertex has {feats.shape[0]} rows for {verts.shape[0]} vertices")
            corner = feats.index_select(0, sample_faces.reshape(-1)).reshape(nv, num_samples, 3, -1)
            wf = w.to(feats.dtype)
            colours = wf[:, :, 0] * corner[:, :, 0] + wf[:, :, 1] * corner[:, :, 1] + wf[:, :, 2] * corner[:, :, 2]
        elif isinstance(tex, TexturesUV):
            channels = {int(m.shape[-1]) for m in tex.maps}
            if len(channels) != 1:
                raise ValueError(f"TexturesUV maps have different channel counts {sorted(channels)}")
            colours = _sample_uv_textures(tex, valid_ids, first_face, face_idx, bary) if nv else None
        else:
            raise ValueError(f"unsupported textures type {type(tex).__name__}")
        width = colours.shape[-1] if colours is not None else channels.pop()
        result = torch.zeros(num_meshes, num_samples, width, dtype=dtype, device=device)
        if colours is not None:
            result[valid] = colours.to(dtype)
        out.append(result)
    return out[0] if len(out) == 1 else tuple(out)


def _sample_one(mesh: Meshes, num_samples: int, kw: dict, **stream) -> tuple[torch.Tensor, ...]:
    out = sample_points_from_meshes(mesh, num_samples, **kw, **stream)
    return out if isinstance(out, tuple) else (out,)
