"""Fixtures for the scene-glue tests: real MRML from the slicer-core wheel under Slicer's own Python layer
(``../shared/slicer/python/<tag>/slicer``, see ``slicer_layer.py`` for the few Qt stand-ins and why).

This folder is deliberately not called ``slicer``: slicer-core's ``slicer/__init__.py`` extends its package
path with every ``slicer/`` folder on ``sys.path``, and pytest puts ``Testing/`` there.
"""

from __future__ import annotations

import pytest


def _import_slicer_core():
    try:
        import slicer
    except ImportError:
        return None
    return slicer


slicer = _import_slicer_core()
if slicer is None or not hasattr(slicer, "vtkMRMLScene"):  # not collected at all without slicer-core
    collect_ignore_glob = ["test_*.py"]
else:
    from Testing.scene import slicer_layer

    if slicer_layer.available():
        slicer_layer.activate(slicer_layer.DEFAULT_TAG)
    else:  # the scene glue needs slicer.util from Slicer's layer: nothing here can run without it
        collect_ignore_glob = ["test_*.py"]

        def pytest_report_header(config):
            return f"Testing/scene skipped: {slicer_layer.missing_reason()}"


@pytest.fixture
def a_scene():
    """A fresh MRML scene, also set as ``slicer.mrmlScene`` (as Slicer's modules expect)."""
    scene = slicer.vtkMRMLScene()
    previous, slicer.mrmlScene = slicer.mrmlScene, scene
    yield scene
    scene.Clear(1)
    slicer.mrmlScene = previous


@pytest.fixture
def a_training_set(a_scene):
    from AutoSegNetSceneLib.cases import TrainingSet

    return TrainingSet(a_scene)


@pytest.fixture
def a_workspace(tmp_path):
    return tmp_path / "workspace"
