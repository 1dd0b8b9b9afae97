"""Operations with their activity and counters, and headless operations (seed 001)."""

from operations.models.headless import HeadlessOperation, HeadlessStatus, UpcomingHeadlessRun
from operations.models.operations import (
    ApprovalPolicy,
    Operation,
    OperationActivity,
    OperationWave,
    WaveState,
)

__all__ = [
    "ApprovalPolicy",
    "HeadlessOperation",
    "HeadlessStatus",
    "Operation",
    "OperationActivity",
    "OperationWave",
    "UpcomingHeadlessRun",
    "WaveState",
]
