"""The constrained scalar types of the config's structs (engine.core.config): durations,
names, severities and escalation choices.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from engine.core.durations import DURATION_PATTERN

__all__ = ["Duration", "Escalations", "Name", "Severity"]

Duration = Annotated[str, msgspec.Meta(pattern=DURATION_PATTERN)]
Name = Annotated[str, msgspec.Meta(pattern=r"\A[a-z0-9_.-]+\Z", max_length=128)]
Severity = Literal["page", "ticket"]
Escalations = Literal["named", "all"]
