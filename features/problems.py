"""What is wrong with a user's data: one `Problem` per finding (file, row, column, reason) and the
`DataError` that carries them. Every reader of user files reports this way (`loading`, `table`,
`feedback`)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_PROBLEMS_SHOWN = 20  # per check, and in an error's message


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    row: int | None  # 1-based data row (header excluded), None for a whole-file problem
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        return f"{where}, column {self.column!r}: {self.reason}" if self.column else f"{where}: {self.reason}"


class DataError(ValueError):
    """The data cannot be used as it is; `problems` says where and why."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
        more = (
            f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more"
            if len(problems) > MAX_PROBLEMS_SHOWN
            else ""
        )
        super().__init__(f"{len(problems)} problem(s) in the data:\n{shown}{more}")
