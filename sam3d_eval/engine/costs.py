"""Annotation cost model of the data engine: minutes per verification and per creation, price per minute.

Defaults and where each comes from (the figures the SAM 3D training-strategy write-up quotes; docs/engine.md):
- `create_minutes` = 22.5: the midpoint of "15-30 min per object" for a manual 3D annotation.
- `verify_minutes` = 2.25: one rater reviewing one image's candidate set and scoring the rubric; the seed
  says people "verify (not create) meshes -> 10x faster than manual annotation", so a tenth
  of `create_minutes`.
- `price_per_minute` = 3.33 USD: "$50-100 per manual 3D annotation" over 15-30 min is $3.33/min at either
  end of both ranges.
These are the seed's figures, not measurements: set them from your own annotation logs.

A round's cost is verifications (images x raters) x verify_minutes x price, plus creation from scratch for
images left without an accepted candidate when `create_rejected` is set; cost per accepted sample divides
the verification cost by the accepted images (what the seed's "$15 -> $5 per sample" measures).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CostModel"]


@dataclass(frozen=True)
class CostModel:
    """Minutes and price of annotation work (module docstring for the defaults' sources)."""

    verify_minutes: float = 2.25
    create_minutes: float = 22.5
    price_per_minute: float = 3.33
    create_rejected: bool = False

    def __post_init__(self) -> None:
        for k in ("verify_minutes", "create_minutes", "price_per_minute"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"cost model {k} must be a number >= 0, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def round_cost(self, images: int, raters: int, accepted: int) -> dict[str, float]:
        """Costs (USD) and minutes of one round: `images` verified by `raters` each, `accepted` of them kept."""
        if min(images, raters, accepted) < 0 or accepted > images:
            raise ValueError(f"bad round counts: images={images}, raters={raters}, accepted={accepted}")
        verify_min = images * raters * self.verify_minutes
        create_min = (images - accepted) * self.create_minutes if self.create_rejected else 0.0
        verify_cost = verify_min * self.price_per_minute
        return {
            "verify_minutes": verify_min,
            "create_minutes": create_min,
            "verify_cost": verify_cost,
            "create_cost": create_min * self.price_per_minute,
            "total_cost": (verify_min + create_min) * self.price_per_minute,
            "cost_per_accepted": verify_cost / accepted if accepted else float("nan"),
            "manual_cost_per_sample": self.create_minutes * self.price_per_minute,
        }
