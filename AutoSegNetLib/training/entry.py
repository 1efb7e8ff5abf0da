"""``train``: the training stage's entry function (what ``autosegnet train`` calls).

Prepares the fold, builds the components, resumes or fine-tunes, runs the loop inside a clean-stop signal
guard, saves the final checkpoint and validates. Returns the model folder. A stop request (signal or stop file,
see :mod:`AutoSegNetLib.utils.stop`) is honoured during training; the final validation runs to its end. The fold
is locked (:func:`~AutoSegNetLib.training.fold_setup.fold_lock`, held by rank 0 under DDP) before anything is
written into its folder, so a second training of it fails at once naming the running one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import PLANS_FILE, STATUS_FILE, checkpoint_file_name, fold_folder_name, model_folder_path
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training.checkpoint import load_checkpoint, newest_checkpoint
from AutoSegNetLib.training.components import (
    TrainingComponents,
    default_num_workers,
    format_parameters,
    make_batch_sources,
    make_components,
    patch_and_batch_size,
)
from AutoSegNetLib.training.config import TrainingConfig
from AutoSegNetLib.training.distributed import (
    DistributedSettings,
    barrier,
    init_process_group,
    shutdown_process_group,
)
from AutoSegNetLib.training.fold_setup import FoldSetup, fold_lock, populate_model_folder
from AutoSegNetLib.training.fold_setup import prepare_fold as _prepare_fold
from AutoSegNetLib.training.loader import BatchLoader, DataWorkerError
from AutoSegNetLib.training.loop import LoopSettings, TrainingState, run_training
from AutoSegNetLib.training.outputs import FoldOutputs, restore_state
from AutoSegNetLib.training.runtime import Runtime, make_runtime
from AutoSegNetLib.training.validation import validate_fold
from AutoSegNetLib.utils.stop import STOP_FILE_NAME, StopRequest, stop_on_signals
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)


def train(workspace: Workspace, dataset: str, configuration: str, fold: int | str, config: TrainingConfig,
          reporter: ProgressReporter, continue_training: bool = False, pretrained: Path | None = None,
          validate_only: bool = False, distributed: DistributedSettings | None = None,
          stop: StopRequest | None = None) -> Path:
    """Train (or resume, fine-tune, validate) one fold of a configuration; returns the model folder.

    ``fold`` is 0..4 (per ``splits_final.json``) or ``"all"``. ``distributed``: this process's place in a DDP
    job (None = single process). A SIGINT/SIGTERM, or ``stop`` becoming requested (e.g. its stop file appearing),
    stops cleanly after the current step with ``checkpoint_latest.pth`` saved and a ``done`` event with
    ``status="stopped"`` (resume with ``continue_training``). Under DDP the ranks agree on stopping at each step.
    """
    is_main = distributed is None or distributed.is_main
    runtime = make_runtime(config.device, config.amp, config.channels_last,
                           distributed.local_rank if distributed else 0)
    if distributed is not None and distributed.world_size > 1:
        init_process_group(distributed, runtime.device)
    status = ProgressReporter("none")
    try:
        setup = _prepare(workspace, dataset, configuration, fold, is_main)
        with fold_lock(setup) if is_main else contextlib.nullcontext():
            if is_main:
                populate_model_folder(setup, workspace,
                                      None if validate_only else patch_and_batch_size(setup.plan, config)[0])
                reporter = reporter.with_status_file(setup.fold_folder / STATUS_FILE)
                status = ProgressReporter("none", status_file=setup.fold_folder / STATUS_FILE)
            else:
                reporter = ProgressReporter("none")
            stop = stop or StopRequest()
            if is_main:
                _watch_fold_stop_file(stop, setup.fold_folder)
            with stop_on_signals(stop) as stop:
                _run(setup, workspace, config, runtime, reporter, stop, continue_training, pretrained, validate_only,
                     distributed)
        return setup.model_folder
    except AutoSegNetError as exc:
        status.emit("error", message=str(exc))  # the CLI reports it on the stream
        raise
    except Exception as exc:
        reporter.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if distributed is not None and distributed.world_size > 1:
            shutdown_process_group()


def saved_training_config(workspace: Workspace, dataset: str, configuration: str, fold: int | str
                          ) -> TrainingConfig | None:
    """The config stored in the checkpoint ``--continue`` would resume from, or None (no checkpoint)."""
    name = workspace.resolve_dataset(dataset)
    plans_path = workspace.preprocessed / name / PLANS_FILE
    if not plans_path.is_file():
        return None
    from AutoSegNetLib.planning.plans import Plans

    folder = model_folder_path(workspace, name, Plans.load(plans_path).plans_name, configuration)
    checkpoint = newest_checkpoint(folder / fold_folder_name(fold))
    if checkpoint is None:
        return None
    return TrainingConfig.from_dict(load_checkpoint(checkpoint)["training_config"], source=str(checkpoint))


# ----- steps ---------------------------------------------------------------------------------------------
def _prepare(workspace: Workspace, dataset: str, configuration: str, fold: int | str, is_main: bool) -> FoldSetup:
    """Rank 0 writes the default splits first; the others read them after a barrier."""
    setup = _prepare_fold(workspace, dataset, configuration, fold, write_splits=True) if is_main else None
    barrier()
    return setup or _prepare_fold(workspace, dataset, configuration, fold, write_splits=False)


def _run(setup: FoldSetup, workspace: Workspace, config: TrainingConfig, runtime: Runtime,
         reporter: ProgressReporter, stop: StopRequest, continue_training: bool, pretrained: Path | None,
         validate_only: bool, distributed: DistributedSettings | None) -> None:
    rank, world = (distributed.rank, distributed.world_size) if distributed else (0, 1)
    resume_from = newest_checkpoint(setup.fold_folder) if continue_training and not validate_only else None
    if continue_training and resume_from is None and not validate_only:
        log.warning("--continue: no checkpoint in %s, starting from scratch.", setup.fold_folder)
    c = make_components(setup, config, runtime, distributed, pretrained if resume_from is None else None)
    sources, geometry = make_batch_sources(setup, config, rank, world)
    if validate_only:
        _load_weights(c, setup.fold_folder / checkpoint_file_name("final"))
        _final_validation(setup, workspace, c, list(geometry.mirror_axes), reporter, distributed)
        return
    settings = LoopSettings.from_config(config)
    state = TrainingState(total_epochs=settings.epochs)
    if resume_from is not None:
        state = restore_state(c, load_checkpoint(resume_from), settings)
        log.info("Resuming from %s at epoch %d, iteration %d.", resume_from.name, state.epoch, state.iteration)
    outputs = FoldOutputs(setup.fold_folder, reporter, c, config, setup.configuration, geometry.mirror_axes,
                          is_main=rank == 0)
    _announce(setup, config, c, state, reporter, outputs)
    if state.epoch < state.total_epochs:
        workers = default_num_workers(config, runtime, os.cpu_count())
        with BatchLoader(sources, workers, config.worker_start_method, config.worker_timeout_s) as loader:
            try:
                finished = run_training(c, loader, state, settings, stop, outputs)
            except DataWorkerError:
                if world == 1:  # the state is consistent between steps: keep what was learnt, then fail
                    outputs.stopped(state)
                raise
        if not finished:
            reporter.emit("done", status="stopped", epoch=state.epoch, iteration=state.iteration,
                          checkpoint=str(setup.fold_folder / checkpoint_file_name("latest")))
            return
        outputs.save("final", state)
        outputs.plot(state)
    if config.final_validation:
        _final_validation(setup, workspace, c, list(geometry.mirror_axes), reporter, distributed)
    reporter.emit("done", status="finished", model_folder=str(setup.model_folder), epochs=state.epoch,
                  best_ema_pseudo_dice=state.best_ema)


def _announce(setup: FoldSetup, config: TrainingConfig, c: TrainingComponents, state: TrainingState,
              reporter: ProgressReporter, outputs: FoldOutputs) -> None:
    message = (f"Training {setup.dataset_name} {setup.configuration} fold {setup.fold}: "
               f"{len(setup.train_cases)} training / {len(setup.val_cases)} validation cases, "
               f"{format_parameters(c.model)}, device {c.runtime.device}, amp {c.runtime.amp_dtype}, "
               f"epochs {state.total_epochs} x {config.iterations_per_epoch} iterations")
    log.info(message)
    outputs.text.write(message)
    reporter.emit("stage", stage="train", dataset=setup.dataset_name, configuration=setup.configuration,
                  fold=setup.fold, epochs=state.total_epochs, start_epoch=state.epoch, device=str(c.runtime.device),
                  message=message)


def _load_weights(c: TrainingComponents, checkpoint_path: Path) -> None:
    if not checkpoint_path.is_file():
        raise AutoSegNetError(f"{checkpoint_path} does not exist: train this fold to the end before validating.")
    c.model.load_state_dict(load_checkpoint(checkpoint_path)["network_weights"])


def _final_validation(setup: FoldSetup, workspace: Workspace, c: TrainingComponents, mirror_axes: list[int],
                      reporter: ProgressReporter, distributed: DistributedSettings | None) -> None:
    rank, world = (distributed.rank, distributed.world_size) if distributed else (0, 1)
    model = c.model
    deep_supervision = model.deep_supervision
    model.deep_supervision = False
    model.eval()
    try:
        validate_fold(setup, workspace, model, c.runtime, mirror_axes, reporter, rank, world)
    finally:
        model.deep_supervision = deep_supervision


def train_in_processes(num_processes: int, workspace: Workspace, dataset: str, configuration: str, fold: int | str,
                       config: TrainingConfig, progress_mode: str, continue_training: bool = False,
                       pretrained: Path | None = None, validate_only: bool = False,
                       stop: StopRequest | None = None) -> None:
    """Start ``num_processes`` DDP processes on this machine (``--num-gpus``) running :func:`train`.

    Progress events of rank 0 go to this process's stdout. A failing rank fails the whole run. Each rank gets
    a copy of ``stop`` and watches its stop file itself (signals are not passed on to the ranks).
    """
    import torch

    from AutoSegNetLib.training.distributed import spawn

    if config.device in ("cuda", "auto") and torch.cuda.is_available() and torch.cuda.device_count() < num_processes:
        raise AutoSegNetError(
            f"--num-gpus {num_processes} but only {torch.cuda.device_count()} CUDA device(s) are visible."
        )
    try:
        spawn(_train_rank, num_processes, args=(workspace, dataset, configuration, fold, config.to_dict(),
                                                progress_mode, continue_training, pretrained, validate_only, stop))
    except Exception as exc:  # torch.multiprocessing.ProcessRaisedException carries the rank's traceback
        raise AutoSegNetError(f"A training process failed: {exc}") from exc


def _train_rank(settings: DistributedSettings, workspace: Workspace, dataset: str, configuration: str,
                fold: int | str, config: dict[str, Any], progress_mode: str, continue_training: bool,
                pretrained: Path | None, validate_only: bool, stop: StopRequest | None) -> None:
    logging.basicConfig(level=logging.INFO if settings.is_main else logging.WARNING, format="%(message)s")
    train(workspace, dataset, configuration, fold, TrainingConfig.from_dict(config), ProgressReporter(progress_mode),
          continue_training, pretrained, validate_only, settings, stop)


def _watch_fold_stop_file(stop: StopRequest, fold_folder: Path) -> None:
    """Stop also when ``<fold>/stop`` appears (how 3D Slicer stops a training it found through ``status.json``);
    one left over from an earlier stop is removed first, or this run would stop at once."""
    path = fold_folder / STOP_FILE_NAME
    if path.exists():
        log.info("Removing the stop request %s left by an earlier run.", path)
        path.unlink(missing_ok=True)
    stop.watch(path)
