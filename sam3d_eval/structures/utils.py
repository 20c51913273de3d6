"""Conversions between list, padded and packed representations of ragged batches (pytorch3d semantics)."""

from __future__ import annotations

from typing import Sequence

import torch


def list_to_padded(
    tensors: Sequence[torch.Tensor],
    pad_size: Sequence[int] | None = None,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Stack ragged tensors of shape `(n_i, *D)` into a `(B, max n_i, *D)` tensor filled with `pad_value`.

    `pad_size`, when given, sets the leading padded sizes (at least the largest `n_i`).
    """
    if len(tensors) == 0:
        raise ValueError("list_to_padded needs at least one tensor")
    lead = max(t.shape[0] for t in tensors)
    if pad_size is not None:
        lead = max(lead, int(pad_size[0]))
    tail = tensors[0].shape[1:]
    for t in tensors:
        if t.shape[1:] != tail:
            raise ValueError(f"ragged tensors must share trailing dims, got {tuple(t.shape)} and {tuple(tail)}")
    out = tensors[0].new_full((len(tensors), lead, *tail), pad_value)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def padded_to_list(padded: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None) -> list[torch.Tensor]:
    """Split a `(B, N, *D)` tensor into `B` tensors of shape `(lengths[i], *D)` (views, no copy)."""
    if lengths is None:
        return list(padded.unbind(0))
    lengths = [int(n) for n in lengths]
    return [padded[i, :n] for i, n in enumerate(lengths)]


def lengths_to_first_idx(lengths: torch.Tensor) -> torch.Tensor:
    """`(B,)` int64 lengths to the `(B,)` index of each element's first row in the packed tensor."""
    first = torch.zeros_like(lengths)
    if lengths.numel() > 1:
        first[1:] = torch.cumsum(lengths[:-1], dim=0)
    return first


def lengths_to_packed_idx(lengths: torch.Tensor) -> torch.Tensor:
    """`(B,)` int64 lengths to the `(sum lengths,)` batch index of every packed row."""
    return torch.repeat_interleave(torch.arange(lengths.shape[0], device=lengths.device), lengths)


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """`(B, max_len)` bool mask, True where the position is inside its element's length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
