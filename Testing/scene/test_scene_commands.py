"""Every engine command line the module builds is accepted by the engine's own argument parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from AutoSegNetSceneLib import commands
from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings

from AutoSegNetLib.cli import build_parser
from AutoSegNetLib.errors import AutoSegNetError

DATASET = DatasetSettings(Path("/ws"), 7, "Scene", ("CT",))
FULL = TrainingSettings(configuration="3d_fullres", fold="all", epochs=3, time_budget_minutes=2.5, device="cpu",
                        iterations_per_epoch=4, amp="bf16")
COMMAND_LINES = {
    "verify": commands.verify(DATASET, Path("/ws/report.json")),
    "plan-and-preprocess": commands.plan_and_preprocess(DATASET, "3d_fullres"),
    "preprocess": commands.preprocess(DATASET, "3d_fullres"),
    "train": commands.train(DATASET, FULL, "3d_fullres"),
    "train --continue": commands.train(DATASET, TrainingSettings(), "2d", resume=True),
    "train --pretrained": commands.train(DATASET, FULL, "3d_fullres", pretrained=Path("/m/fold_all/c.pth")),
    "predict": commands.predict(Path("/ws"), Path("/in"), Path("/out"), Path("/m"), ["0", "1"], tta=False,
                                save_uncertainty=True, save_probabilities=True, device="cpu"),
    "install-model": commands.install_model(Path("/ws"), Path("/m.zip")),
    "models install": commands.install_catalogue_model(Path("/ws"), "demo-ellipsoids", "/ws/index.json"),
    "version save": commands.save_version(Path("/ws"), "Dataset007_Scene", "3d_fullres", Path("/v/fold_all/c.pth")),
    "version prepare": commands.prepare_finetuning(DATASET, "3d_fullres", "all"),
    "import-staged": commands.import_staged(DATASET, Path("/ws/jobs/staging/Dataset007_Scene"), Path("/ws/r.json")),
    "export-model": commands.export_model(Path("/ws"), Path("/ws/versions/D/2d/v001"), Path("/ws/m.zip"), ["all"]),
}


@pytest.mark.parametrize("name", sorted(COMMAND_LINES))
def test_the_engine_parser_accepts_the_command_line(name):
    args = COMMAND_LINES[name]
    parsed = build_parser().parse_args(args)
    assert parsed.workspace == "/ws" and parsed.progress == "json"


def test_train_options_reach_the_engine_as_given():
    parsed = build_parser().parse_args(COMMAND_LINES["train --pretrained"])
    assert (parsed.dataset, parsed.configuration, parsed.fold) == ("Dataset007_Scene", "3d_fullres", "all")
    assert (parsed.epochs, parsed.iterations, parsed.time_budget, parsed.device) == (3, 4, 2.5, "cpu")
    assert parsed.amp == "bf16" and "--amp" not in commands.train(DATASET, TrainingSettings(), "2d")
    assert parsed.pretrained == Path("/m/fold_all/c.pth")
    assert build_parser().parse_args(COMMAND_LINES["train --continue"]).continue_training is True


def test_predict_options_reach_the_engine_as_given():
    parsed = build_parser().parse_args(COMMAND_LINES["predict"])
    assert (parsed.input, parsed.output, parsed.model_folder, parsed.folds) == ("/in", "/out", "/m", ["0", "1"])
    assert parsed.no_tta and parsed.save_probabilities and parsed.save_uncertainty == "entropy"
    assert parsed.reorient  # on by default from Slicer
    plain = commands.predict(Path("/ws"), Path("/in"), Path("/out"), Path("/m"), ["0"], reorient=False)
    assert not build_parser().parse_args(plain).reorient


def test_export_model_names_the_model_folder_and_folds():
    parsed = build_parser().parse_args(COMMAND_LINES["export-model"])
    assert (parsed.model_folder, parsed.dataset, parsed.output, parsed.folds) == (
        Path("/ws/versions/D/2d/v001"), None, "/ws/m.zip", ["all"])


def test_an_unknown_precision_is_refused():
    with pytest.raises(AutoSegNetError, match="Unknown precision 'fp8'"):
        TrainingSettings(amp="fp8")
