"""The engine command lines the module runs (``python -m AutoSegNetLib <command> ...``).

One function per command, returning the argument list after ``-m AutoSegNetLib``. Every command line gets
``--workspace`` and ``--progress json``; a test parses each with the engine's own argument parser, so a
renamed engine option shows up as a failing test rather than as a job that dies in the user's hands.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings


def _common(workspace_root: Path) -> list[str]:
    return ["--workspace", str(workspace_root), "--progress", "json"]


def verify(dataset: DatasetSettings, report: Path | None = None) -> list[str]:
    """Check the exported raw dataset; every problem also goes to the JSON ``report`` file when given."""
    args = ["verify", dataset.folder_name]
    if report is not None:
        args += ["--report", str(report)]
    return [*args, *_common(dataset.workspace_root)]


def plan_and_preprocess(dataset: DatasetSettings, configuration: str) -> list[str]:
    """Fingerprint, plan and preprocess the dataset for one configuration."""
    return ["plan-and-preprocess", dataset.folder_name, "-c", configuration, *_common(dataset.workspace_root)]


def preprocess(dataset: DatasetSettings, configuration: str) -> list[str]:
    """Preprocess (new) cases with the existing plans, as retraining needs (fine-tuning keeps the plan)."""
    return ["preprocess", dataset.folder_name, "-c", configuration, *_common(dataset.workspace_root)]


def train(dataset: DatasetSettings, training: TrainingSettings, configuration: str,
          resume: bool = False, pretrained: Path | None = None) -> list[str]:
    """Train ``configuration`` on the chosen fold; ``resume`` continues, ``pretrained`` fine-tunes."""
    args = ["train", dataset.folder_name, configuration, training.fold, "--epochs", str(training.epochs)]
    if training.iterations_per_epoch:
        args += ["--iterations", str(training.iterations_per_epoch)]
    if training.time_budget_minutes > 0:
        args += ["--time-budget", f"{training.time_budget_minutes:g}"]
    if training.device != "auto":
        args += ["--device", training.device]
    if training.amp != "auto":
        args += ["--amp", training.amp]
    if resume:
        args.append("--continue")
    if pretrained is not None:
        args += ["--pretrained", str(pretrained)]
    return [*args, *training.extra_args, *_common(dataset.workspace_root)]


def predict(workspace_root: Path, input_folder: Path, output_folder: Path, model_folder: Path,
            folds: Sequence[str], tta: bool = True, save_uncertainty: bool = False,
            save_probabilities: bool = False, device: str = "auto", reorient: bool = True) -> list[str]:
    """Predict the images in ``input_folder`` with a model folder; results land in ``output_folder``.

    ``reorient`` (on by default in Slicer, where a volume's geometry is what the user sees) predicts a volume
    stored in another orientation than the training cases in theirs, and turns the result back.
    """
    args = ["predict", "-i", str(input_folder), "-o", str(output_folder), "--model-folder", str(model_folder),
            "-f", *folds]
    if reorient:
        args.append("--reorient")
    if not tta:
        args.append("--no-tta")
    if save_uncertainty:
        args.append("--save-uncertainty")
    if save_probabilities:
        args.append("--save-probabilities")
    if device != "auto":
        args += ["--device", device]
    return [*args, *_common(workspace_root)]


def install_model(workspace_root: Path, zip_file: Path) -> list[str]:
    """Install a model zip (made by ``export-model``) into the workspace."""
    return ["install-model", str(zip_file), *_common(workspace_root)]


def import_staged(dataset: DatasetSettings, staging: Path, report: Path | None = None) -> list[str]:
    """Write the cases staged by :class:`~AutoSegNetSceneLib.staging.StagedExport` in ``staging`` into the raw
    dataset (hashing, compressing, dataset.json); what was done goes to the JSON ``report`` file when given."""
    args = ["import-staged", str(staging)]
    if report is not None:
        args += ["--report", str(report)]
    return [*args, *_common(dataset.workspace_root)]


def install_catalogue_model(workspace_root: Path, name: str, index: str | None = None) -> list[str]:
    """Download the catalogue entry ``name`` (size and sha256 checked) and install it into the workspace;
    ``index``: another catalogue (URL or file) than the default one."""
    args = ["models", "install", name, *(["--index", str(index)] if index else [])]
    return [*args, *_common(workspace_root)]


def save_version(workspace_root: Path, dataset_name: str, configuration: str,
                 based_on: Path | None = None) -> list[str]:
    """Copy the finished working model into the next ``versions/<dataset>/<configuration>/v<NNN>``."""
    args = ["version", "save", dataset_name, configuration]
    if based_on is not None:
        args += ["--based-on", str(based_on)]
    return [*args, *_common(workspace_root)]


def prepare_finetuning(dataset: DatasetSettings, configuration: str, fold: str) -> list[str]:
    """Empty the working fold folder before fine-tuning (saving an unsaved training there as a version first)."""
    return ["version", "prepare", dataset.folder_name, configuration, "--fold", fold, *_common(dataset.workspace_root)]


def export_model(workspace_root: Path, model_folder: Path, output: Path,
                 folds: Sequence[str] | None = None) -> list[str]:
    """Pack one model folder (a saved version, a trained or an installed model) into the zip ``output``, with
    every fold that has a final checkpoint or ``folds``."""
    args = ["export-model", "--model-folder", str(model_folder), "-o", str(output)]
    if folds:
        args += ["-f", *folds]
    return [*args, *_common(workspace_root)]
