"""The names of an evaluator's group columns: `group_of` (`region=eu,operation=GET /x`,
`__other__` for the overflow group) and `column_in_use`.

`GroupsMixin` holds those methods of `Evaluator` (engine.core.evaluator); they read the
classifier's group assignment (engine.core.matching), declared below for the type
checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.core.config import OTHER_GROUP, Slo

if TYPE_CHECKING:
    from engine.core.matching import Classifier

__all__ = ["GroupsMixin"]


class GroupsMixin:
    """The group-naming methods of `Evaluator`."""

    if TYPE_CHECKING:
        slos: list[Slo]
        config_slos: list[Slo]
        column_slo: npt.NDArray[Any]
        classifier: Classifier

    def group_of(self, column: int) -> str | None:
        """The group of a column as people read it: `region=eu,operation=GET /x` (the
        SLO's `group_by` keys in order, an absent or empty value empty, and `\\`, `,`
        and `=` in a value escaped with a backslash, so that two groups never share a
        name), `__other__` for the overflow group; None for a column of an SLO without
        groups or a group column not assigned yet (`column_in_use`)."""
        slo = self.slos[column]
        if not slo.group_by:
            return None
        j = int(self.column_slo[column])
        if column == int(self.classifier.column_base[j]) + slo.group_limit:
            return OTHER_GROUP
        gk = self.classifier.column_group[column]
        if gk is None:
            return None
        return ",".join(
            f"{k}={_escape_group_value(v or '')}" for k, v in zip(slo.group_by, gk, strict=True)
        )

    def column_in_use(self) -> npt.NDArray[np.bool_]:
        """(n_columns,) False for the group columns no group has been assigned to yet
        (their windows are empty); True for the rest, overflow columns included."""
        used = np.ones(len(self.slos), dtype=bool)
        for j, slo in enumerate(self.config_slos):
            if slo.group_by:
                base = int(self.classifier.column_base[j])
                used[base + len(self.classifier.groups[j]) : base + slo.group_limit] = False
        return used


def _escape_group_value(value: str) -> str:
    """A label value as it is written in a group name: `\\`, `,` and `=` behind a
    backslash. The names before each `=` are the SLO's `group_by`, the same for all its
    groups, so with values escaped no two groups of an SLO share a name."""
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
