"""Command-line interface: ``autosegnet COMMAND ...`` / ``python -m AutoSegNetLib COMMAND ...``.

The CLI only parses arguments and calls stage entry points. It is the one place that reads environment
variables (to build the :class:`~AutoSegNetLib.workspace.Workspace`). Each command lives in its own
module under ``AutoSegNetLib/cli/`` with ``add_arguments(parser)`` and ``run(args, ctx) -> int``.

Common options, accepted before or after the command name: ``--workspace``, ``--progress``, ``-v`` and
``--stop-file PATH``. With ``--stop-file`` the command stops cleanly once ``PATH`` exists (checked at most every
0.5 s; see :mod:`AutoSegNetLib.utils.stop`) -- the way to stop the engine where signals do not reach it, as
under 3D Slicer's ``PythonSlicer`` launcher. The engine never creates or deletes the file; remove a stale one
before starting. A command stopped on request exits with status 0 and its last event is ``done`` with
``"status": "stopped"`` (a finished ``train`` says ``"finished"``; other commands' normal ``done`` events have
no ``status``):

- ``train``: after the current step, with ``checkpoint_latest.pth`` saved (``train --continue`` resumes
  exactly there); ``done`` has ``epoch``, ``iteration`` and ``checkpoint``. SIGINT/SIGTERM do the same. Under
  DDP every rank watches the file and they stop at the same step. The final validation is not interrupted;
- ``predict``: between cases; the cases written stay complete (files are written atomically; ``--continue``
  does the rest); ``done`` has ``stage``, ``cases`` (written) and ``total``. Stopped before the first case,
  nothing is written;
- ``verify``: between cases; ``done`` has ``stage``, ``checked``, ``total``, ``errors``, ``warnings``; no verdict
  and no ``--report`` file;
- ``fingerprint``: between cases; nothing is written;
- ``preprocess`` / ``plan-and-preprocess``: between cases (and between stages); the cases written stay, the
  configuration folder stays marked incomplete (training refuses it) until the same command is run again, which
  only does the missing cases; ``done`` has ``stage``, ``preprocessed`` (cases per configuration), ``seconds``;
  a stop during verify or fingerprint writes neither fingerprint nor plans;
- ``install-model``: before or while unpacking into a staging folder, never halfway through installing;
  nothing is installed;
- stops that abandon work (fingerprint, install-model, plan-and-preprocess before preprocessing) give a
  ``done`` event with ``stage`` (the command) and ``message``; other commands ignore the stop file.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib import __version__
from AutoSegNetLib.cli.arguments import CommandParser, notes_of
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.progress import MODES, ProgressReporter
from AutoSegNetLib.utils.os_errors import describe_os_error
from AutoSegNetLib.utils.stop import StopRequest, StopRequested
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger("AutoSegNetLib")


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command("demo", "demo", "run the whole pipeline on a small synthetic dataset (no download)"),
    Command("convert", "convert", "convert MSD / nnU-Net v1 / image+label folders into a raw dataset"),
    Command("verify", "verify", "check a raw dataset's integrity and report every problem"),
    Command("import-staged", "import_staged", "write cases staged by the Slicer module into a raw dataset"),
    Command("fingerprint", "fingerprint", "extract the dataset fingerprint (spacings, shapes, intensities)"),
    Command("plan", "plan", "plan the configurations (2d, 3d_fullres, 3d_lowres, cascade) -> plans.json"),
    Command("preprocess", "preprocess", "crop, normalise and resample cases for a configuration"),
    Command("plan-and-preprocess", "plan_and_preprocess", "fingerprint + plan + preprocess in one go"),
    Command("train", "train", "train a configuration on a fold (or all) with the nnU-Net recipe"),
    Command("predict", "predict", "sliding-window prediction of image files with a trained model"),
    Command("evaluate", "evaluate", "compare predictions with references (Dice, IoU, HD95, ...)"),
    Command("ensemble", "ensemble", "average the probabilities of several prediction folders"),
    Command("postprocess", "postprocess", "determine/apply connected-component postprocessing"),
    Command("find-best", "find_best", "compare configurations and ensembles on cross-validation"),
    Command("export-model", "export_model", "export a trained model as a zip"),
    Command("install-model", "install_model", "install a model zip into the workspace"),
    Command("import-nnunet", "import_nnunet", "import a model folder trained with nnU-Net v2"),
    Command("download-model", "download_model", "download a model zip (resumable, sha256-checked) and install it"),
    Command("models", "models", "the pretrained-model catalogue: list, show NAME, install NAME"),
    Command("move-plans", "move_plans", "give a dataset the plans of another for fine-tuning (--pretrained)"),
    Command("plot-overlays", "plot_overlays", "PNG overlays of labels/predictions on images + index.html gallery"),
    Command("version", "version", "save a model version / prepare fine-tuning (the module's retrain loop)"),
    Command("serve", "serve", "run jobs for remote clients (the Slicer module) over HTTP, with tokens"),
    Command("web", "web", "browser UI for the annotate-correct-retrain loop (trame-slicer); tokens beyond localhost"),
)


@dataclass
class CliContext:
    """What every command receives besides its arguments."""

    workspace: Workspace
    reporter: ProgressReporter
    stop: StopRequest = field(default_factory=StopRequest)


def _module_name(command: Command) -> str:
    return f"AutoSegNetLib.cli.{command.module}"


def _add_common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Options accepted before and after the command name (``autosegnet --workspace W train ...``)."""

    def default(value):
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--workspace", default=default(None),
                        help="workspace root with raw/, preprocessed/, results/ (default: $AUTOSEGNET_HOME, "
                        "else $nnUNet_raw/$nnUNet_preprocessed/$nnUNet_results, else ~/autosegnet)")
    parser.add_argument("--progress", choices=MODES, default=default("text"),
                        help="progress output: text (log lines), json (one JSON event per line on stdout), none")
    parser.add_argument("-v", "--verbose", action="store_true", default=default(False), help="debug logging")
    parser.add_argument("--stop-file", type=Path, default=default(None), metavar="PATH",
                        help="stop cleanly once this file exists (for callers whose signals do not reach the "
                        "engine, e.g. 3D Slicer); the command then exits 0 with a 'done' event of status 'stopped'")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, only that command's module is imported (fast start-up).

    Command modules may import heavy packages (torch); ``main`` passes the command it finds in ``argv``
    so ``autosegnet verify`` never pays for importing torch.
    """
    parser = CommandParser(
        prog="autosegnet",
        description="AutoSegNet: self-configuring medical image segmentation (nnU-Net v2 family).",
    )
    parser.add_argument("--version", action="version", version=f"autosegnet {__version__}")
    _add_common_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, defaults=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help, parents=[common])
        sub.set_defaults(_command=command)
        if only is None or only == command.name:
            importlib.import_module(_module_name(command)).add_arguments(sub)
    return parser


#: Common options followed by a value (which may look like a command name).
_VALUE_OPTIONS = ("--workspace", "--progress", "--stop-file")


def _command_in(argv: Sequence[str]) -> str | None:
    """The command name in ``argv`` (skipping the values of the common options), if any."""
    names = {c.name for c in COMMANDS}
    skip_next = False
    for token in argv:
        if skip_next:
            skip_next = False
        elif token in _VALUE_OPTIONS:
            skip_next = True
        elif token in names:
            return token
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command_name = _command_in(argv)
    parser = build_parser(only=command_name or "")
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
        stream=sys.stderr,
    )
    _log_notes(args)
    reporter = ProgressReporter(args.progress)
    ctx = CliContext(Workspace.from_environment(os.environ, args.workspace), reporter, _stop_request(args.stop_file))
    try:
        return int(importlib.import_module(_module_name(command)).run(args, ctx) or 0)
    except StopRequested as exc:
        log.warning("autosegnet %s: %s; nothing was left half-done.", command.name, exc)
        reporter.emit("done", stage=command.name, status="stopped", message=str(exc))
        return 0
    except AutoSegNetError as exc:
        reporter.emit("error", message=str(exc)) if args.progress == "json" else None
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:
        message = unwritable_message(exc, ctx.workspace)
        if message is None:
            raise
        reporter.emit("error", message=message) if args.progress == "json" else None
        sys.stderr.write(f"error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def unwritable_message(exc: OSError, workspace: Workspace) -> str | None:
    """What to tell the user for an error writing files -- no permission, read-only or full file system -- and how
    to choose another place (inside the workspace: another workspace); None for other errors."""
    no_room = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    if exc.errno not in {errno.EACCES, errno.EPERM, errno.EROFS, *no_room} or not exc.filename:
        return None
    path = Path(os.fsdecode(exc.filename))
    target = path if path.exists() else path.parent  # a file being created: its folder is the problem
    verb = "write" if exc.errno != errno.EACCES or not os.access(target, os.W_OK) else "access"
    where = f"{verb} {target}" if target == path else f"{verb} in {target}"
    fix = "free space there or" if exc.errno in no_room else "make that folder writable or"
    if any(path.is_relative_to(root) for root in (workspace.raw, workspace.preprocessed, workspace.results)):
        hint = (f"{fix} choose another workspace with --workspace DIR or the AUTOSEGNET_HOME environment variable "
                "(or nnUNet_raw / nnUNet_preprocessed / nnUNet_results)")
    else:
        hint = f"{fix} choose another location"
    return f"cannot {where}: {describe_os_error(exc)}; {hint}."


def _log_notes(args: argparse.Namespace) -> None:
    """Log what parsing noted: options spelled as in nnU-Net that are accepted but change nothing here."""
    for note in notes_of(args):
        log.info("%s", note)


def _stop_request(stop_file: Path | None) -> StopRequest:
    """The command's stop request, watching ``stop_file`` (warned about when it exists already)."""
    if stop_file is not None and stop_file.exists():
        log.warning("Stop file %s exists already: the command will stop at its first check. Delete it before "
                    "starting a command that should run.", stop_file)
    return StopRequest(stop_file)
