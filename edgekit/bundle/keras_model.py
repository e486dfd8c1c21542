"""The one Keras loader: a saved `.keras` model (a bundle's float model, a run's model, a user's file)."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import ModelFileError, require_tensorflow


def load_keras(path: str | Path, *, compile: bool = False):
    """Load with edgekit's custom layers registered; a file Keras cannot read is a ModelFileError."""
    require_tensorflow()
    import keras

    import edgekit.models.layers  # noqa: F401 - registers edgekit's layers for deserialisation

    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as exc:
        if "safe_mode" in str(exc):  # Keras refuses to run code stored in the file (a Lambda layer)
            what = "a `Lambda` layer" if "Lambda" in str(exc) else "Python code"
            raise ModelFileError(
                f"{path} holds {what}, which Keras' safe mode refuses to deserialize (it would run code "
                "from the file)",
                hint="rebuild the model without Lambda layers, or load it yourself with safe_mode=False "
                "if you trust the file, and save it again",
            ) from None
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelFileError(
            f"{path} cannot be loaded as a Keras model ({exc.__class__.__name__}{': ' + detail if detail else ''})",
            hint="pass a .keras file saved by Keras 3 (edgekit train / export write one)",
        ) from None
