"""The `Predictor` interface: any single-image-to-3D model the evaluation can run (docs/architecture.md).

An object with a ``name``, an ``identity`` and a ``predict`` method is a predictor; nothing needs to be
subclassed (`typing.Protocol`, checked structurally with ``isinstance(obj, Predictor)``). The reference
model's checkpoints implement it; a folder of exported predictions is the other kind of source
(`evaluate.sources`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # torch and the structures are only needed by implementations
    import torch

    from ..structures import Meshes

__all__ = ["Predictor"]


@runtime_checkable
class Predictor(Protocol):
    """A model that turns images and masks into meshes.

    name: a short human label (printed in tables).
    identity: a stable string that names the model and its weights exactly (e.g. a checkpoint's content
        hash); it keys the results, so two different models must never share one, and a resumed run only
        skips samples stored under the same identity.

    ``predict(images, masks, cameras)``:
        images: ``(B, 3, H, W)`` float in [0, 1] (RGB), masks: ``(B, 1, H, W)`` bool (the visible object),
        cameras: a sequence of B camera records (the manifest's ``camera`` JSON as dicts; None for a row
        without one), or None when no row of the batch has a camera.
        Returns a `Meshes` of B meshes, element b predicted from image b, in the model's output frame (the
        protocol normalises and, if it says so, aligns). It should not change process-wide state and may
        raise for the whole batch; the runner then records the batch's samples as failed with the message.
    """

    name: str
    identity: str

    def predict(self, images: torch.Tensor, masks: torch.Tensor, cameras: Sequence[Any]) -> Meshes: ...
