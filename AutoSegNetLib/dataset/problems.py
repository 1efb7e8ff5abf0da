"""What ``verify`` reports: problem codes with their severity, :class:`Problem`, :class:`VerificationReport`, and
the message refusing a dataset for its errors.

Every finding is a :class:`Problem` with a stable ``code`` (see :data:`PROBLEM_CODES`); ``error`` problems
make the dataset unusable for training, ``warning`` ones deserve a look.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from AutoSegNetLib.utils.atomic import write_json

ERROR = "error"
WARNING = "warning"
#: Default geometry tolerance: relative for spacing, absolute for direction cosines, mm for the origin.
DEFAULT_TOLERANCE = 1e-4
_SHOWN_ERRORS = 20

#: Every problem code with its severity and what it means (the report's vocabulary).
PROBLEM_CODES: dict[str, tuple[str, str]] = {
    "invalid_dataset_json": (ERROR, "dataset.json is missing, not JSON, or has a wrong/missing/unknown field"),
    "missing_folder": (ERROR, "imagesTr/ or labelsTr/ is missing"),
    "no_training_cases": (ERROR, "no training images named {case}_{CCCC}{file_ending} were found"),
    "num_training_mismatch": (ERROR, "numTraining differs from the number of training cases found"),
    "missing_label": (ERROR, "a training case has images but no label file"),
    "label_without_image": (ERROR, "a label file has no images"),
    "missing_channel": (ERROR, "a channel file of a case is missing"),
    "extra_channel": (ERROR, "a channel file beyond the channels in channel_names"),
    "wrong_channel_count": (ERROR, "the images of a case hold another number of channels than channel_names"),
    "unreadable_file": (ERROR, "a file cannot be read (truncated, corrupt, wrong format, not scalar)"),
    "shape_mismatch": (ERROR, "image channels or image and label differ in shape"),
    "spacing_mismatch": (ERROR, "image channels or image and label differ in spacing (beyond the tolerance)"),
    "origin_mismatch": (ERROR, "image channels or image and label differ in origin (beyond the tolerance)"),
    "direction_mismatch": (ERROR, "image channels or image and label differ in direction (beyond the tolerance)"),
    "invalid_spacing": (ERROR, "a spacing is zero, negative or not finite"),
    "non_finite_values": (ERROR, "an image holds NaN or Inf values"),
    "non_integer_label": (ERROR, "a label file holds values that are not whole numbers"),
    "undeclared_label": (ERROR, "a label file holds values that dataset.json's labels do not declare"),
    "mixed_dimensionality": (ERROR, "some cases are 2D and others 3D"),
    "empty_label": (WARNING, "a label file holds background (and ignore) only"),
    "constant_image": (WARNING, "an image channel holds one value everywhere"),
    "orientation_differs": (WARNING, "a case's orientation differs from that of most cases"),
    "stray_file": (WARNING, "a file that is not part of any case (wrong name or ending, hidden, folder)"),
}


@dataclass(frozen=True)
class Problem:
    """One finding: severity ``error``/``warning``, the case and file (relative to the dataset) it concerns."""

    severity: str
    case: str | None
    file: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = " ".join(x for x in (f"[{self.case}]" if self.case else "", self.file or "") if x)
        return f"{self.severity.upper()} {self.code}: {where + ': ' if where else ''}{self.message}"


def problem(code: str, message: str, case: str | None = None, file: str | None = None) -> Problem:
    """A :class:`Problem` with the severity registered for ``code``."""
    return Problem(PROBLEM_CODES[code][0], case, file, code, message)


def relative_name(path: Path, folder: Path) -> str:
    """``path`` relative to the dataset ``folder`` (POSIX separators), or as is when it lies elsewhere."""
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return str(path)


@dataclass
class VerificationReport:
    """All problems found in one dataset (sorted: dataset-wide first, then by case, file and code).

    ``checked_cases`` < the number of cases when a stop request cut the run short (``complete`` is then False
    and the report is no verdict on the dataset).
    """

    dataset: str
    num_training_cases: int
    num_test_cases: int
    tolerance: float
    problems: list[Problem] = field(default_factory=list)
    checked_cases: int = 0

    @property
    def complete(self) -> bool:
        """False when a stop request ended the run before every case was checked."""
        return self.checked_cases >= self.num_training_cases + self.num_test_cases

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def codes(self) -> set[tuple[str | None, str]]:
        """``{(case, code)}``: a compact view for tests and scripts."""
        return {(p.case, p.code) for p in self.problems}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "autosegnet-verify-report", "version": 1, "dataset": self.dataset, "ok": self.ok,
            "num_training_cases": self.num_training_cases, "num_test_cases": self.num_test_cases,
            "tolerance": self.tolerance, "num_errors": len(self.errors), "num_warnings": len(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
        }

    def save(self, path: str | Path) -> None:
        """Write the report as JSON (atomically)."""
        write_json(path, self.to_dict())


def refusal(errors: list[Problem], folder: Path) -> str:
    """The message refusing a dataset for ``errors``: one line per problem naming the case and file, and the fix."""
    lines = [f"  {_where(p)}{p.message}" for p in errors[:_SHOWN_ERRORS]]
    if len(errors) > _SHOWN_ERRORS:
        lines.append(f"  ... and {len(errors) - _SHOWN_ERRORS} more")
    return (f"The raw dataset {folder} has {len(errors)} error(s) that would make training wrong:\n"
            + "\n".join(lines) + f"\nFix the files; `autosegnet verify {folder.name}` lists every problem at once.")


def _where(found: Problem) -> str:
    parts = [f"case {found.case!r}" if found.case else "", found.file or ""]
    where = ", ".join(part for part in parts if part)
    return f"{where}: " if where else ""
