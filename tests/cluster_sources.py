"""A test source for the cluster backends: the synthetic builder, saying in its task log which
GPUs each unit's worker was given (CUDA_VISIBLE_DEVICES, as Cycles and CUDA read it)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from sources import SyntheticBuilder

from dwm_data.builder import UnitContext, WorkUnit
from dwm_data.sample import Sample


class DeviceBuilder(SyntheticBuilder):
    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        ctx.log.info(
            "%s sees CUDA_VISIBLE_DEVICES=%r", unit.id, os.environ.get("CUDA_VISIBLE_DEVICES")
        )
        yield from super().process(unit, ctx)
