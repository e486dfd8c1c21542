"""The `edgekit` command: a lazy Click group (subcommand modules load only when invoked).

Add a command by adding one line to COMMANDS; its module must not import TensorFlow at import time.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from edgekit import __version__
from edgekit.errors import describe_exit_codes

# name -> ("module", "attribute", "one-line help shown by `edgekit --help` without importing it")
COMMANDS: dict[str, tuple[str, str, str]] = {
    "models": ("edgekit.cli.models_cmd", "models", "List model families and variants with params and MACs."),
    "export": ("edgekit.cli.export_cmd", "export", "Build/load a model, quantize, verify, write a bundle."),
    "convert": ("edgekit.cli.convert_cmd", "convert", "ONNX image classifier -> verified TFLite bundle."),
    "train": ("edgekit.cli.train_cmd", "train", "Train a zoo model on image folders, a CSV or builtin:mnist."),
    "eval": ("edgekit.cli.eval_cmd", "eval", "Accuracy of a bundle/run/.keras/.tflite: float vs int8."),
    "profile": ("edgekit.cli.profile_cmd", "profile", "Latency per threads x batch on this machine or a device."),
    "camera": ("edgekit.cli.camera_cmd", "camera", "Classify a video, stream or camera on this machine or a device."),
    "devices": ("edgekit.cli.devices_cmd", "devices", "Device inventory (SSH, adb, local): add, list, check, setup."),
    "deploy": ("edgekit.cli.deploy_cmd", "deploy", "Copy a bundle + device scripts to devices; switch `current`."),
    "runs": ("edgekit.cli.runs_cmd", "runs", "Recorded runs: list, show, export as CSV."),
    "report": ("edgekit.cli.report_cmd", "report", "HTML/Markdown report: results, Pareto plot, latency."),
    "sweep": ("edgekit.cli.sweep_cmd", "sweep", "α × resolution sweep: export, profile, eval, Pareto."),
    "quantize": ("edgekit.cli.quantize_cmd", "quantize", "Any float .tflite -> int8 with the LiteRT Quantizer (no TensorFlow)."),
}


class LazyGroup(click.Group):
    """Click's documented LazyGroup pattern: import a subcommand only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so `edgekit --help` imports no command module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


EPILOG = describe_exit_codes()


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """edgekit: from a Keras image classifier to a measured int8 model on a real edge device."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and an exit code, never a traceback."""
    from edgekit.cli.output import install_warning_printer
    from edgekit.errors import EdgekitError, ExitCode

    install_warning_printer()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ banner is noise for users
    try:
        rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except EdgekitError as exc:
        click.echo(f"{exc.prefix}: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except Exception:
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        import traceback

        traceback.print_exc()
        click.echo("error: internal error (a bug in edgekit); please report the traceback above", err=True)
        sys.exit(int(ExitCode.INTERNAL))
    sys.exit(rv if isinstance(rv, int) else 0)
