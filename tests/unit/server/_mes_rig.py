"""The MES test rig, shared with the API tests from ``andon.testing.mes``."""

from __future__ import annotations

from andon.testing.mes import CELL, T0, TAG, MesRig, small_plant

__all__ = ["CELL", "T0", "TAG", "MesRig", "small_plant"]
