"""One exit-code table: the CLI's, the device scripts' and the device shell snippets' numbers agree."""

from __future__ import annotations

from edgekit.device_scripts import edgelib
from edgekit.devices import deploy
from edgekit.errors import (
    DependencyError,
    DeviceError,
    ExitCode,
    InputDataError,
    ModelFileError,
    UsageError,
    VerificationError,
    describe_exit_codes,
    error_class,
)


def test_device_scripts_use_edgekits_codes():
    pairs = {"USAGE": edgelib.EXIT_USAGE, "INPUT": edgelib.EXIT_INPUT, "MODEL": edgelib.EXIT_MODEL,
             "DEVICE": edgelib.EXIT_DEVICE, "DEPENDENCY": edgelib.EXIT_DEPENDENCY,
             "INTERRUPTED": edgelib.EXIT_INTERRUPTED}  # fmt: skip
    for name, code in pairs.items():
        assert ExitCode[name] == code, name


def test_exit_codes_map_back_to_their_error_class():
    expected = {2: UsageError, 3: InputDataError, 4: ModelFileError, 5: VerificationError, 6: DeviceError,
                8: DependencyError}  # fmt: skip
    for code, cls in expected.items():
        assert error_class(code) is cls
    assert error_class(77) is DeviceError  # anything else a device says is a device failure


def test_device_shell_snippets_exit_with_the_table():
    assert f"exit {int(ExitCode.VERIFY)}" in deploy._INSTALL
    assert f"exit {int(ExitCode.DEPENDENCY)}" in deploy._INSTALL
    assert "@" not in deploy._INSTALL.replace("$@", "")  # every placeholder filled


def test_help_lists_every_code():
    text = describe_exit_codes()
    assert all(f"{int(c)} " in text for c in ExitCode)
