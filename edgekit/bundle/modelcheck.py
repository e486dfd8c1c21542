"""Check a `.tflite` before anything in this process trusts it.

Two steps: a structural flatbuffer check in Python (cheap, no native code), then a probe in a
subprocess that loads it, checks it is an image classifier and invokes it once. A model that
crashes the interpreter (SIGSEGV in C++) then kills only that subprocess, never the CLI.

`load_model` / `load_models` are the one way the desktop opens a model in its own process (eval,
export's and convert's verification, --max-drop's candidates): probe first, always. A bundle's
checksums say the files are the ones written, not that they are safe: anyone can recompute them.
Device commands run models in device scripts (a process of their own) and probe only doubtful ones.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekit.device_scripts import edgelib
from edgekit.errors import DependencyError, EdgekitError, InputDataError, ModelFileError

PROBE_TIMEOUT_S = 120.0
PER_MODEL_S = 10.0  # added to the probe's time limit for each further model in one probe process
_PROBED: dict[str, dict | EdgekitError] = {}  # sha256 -> probe outcome, for this process


def scripts_dir() -> Path:
    """The device scripts folder (installed as edgekit.device_scripts)."""
    import edgekit.device_scripts

    return Path(edgekit.device_scripts.__file__).resolve().parent


def check_structure(path: str | Path) -> bytes:
    """The file's bytes when it looks like a TFLite flatbuffer; ModelFileError with one line if not."""
    from edgekit.converters.tflite_file import NotTFLiteError, check_file

    try:
        return check_file(path)
    except NotTFLiteError as exc:
        raise ModelFileError(str(exc), hint="pass a .tflite file or an edgekit bundle folder") from None


def probe_many(
    paths: list[str | Path], *, python: str | None = None, timeout: float = PROBE_TIMEOUT_S
) -> list[dict | EdgekitError]:
    """Load and invoke each model once in a probe subprocess: its description, or the error (one line).

    One process probes them in turn; when a model kills it, that model is reported as crashing and a
    fresh process goes on with the next, so N models cost one process start plus one per crash."""
    paths = [str(p) for p in paths]
    out: list[dict | EdgekitError | None] = [None] * len(paths)
    start = 0
    while start < len(paths):
        todo = paths[start:]
        argv = [python or sys.executable, str(scripts_dir() / "edgelib.py"), "probe", *todo]
        limit = timeout + PER_MODEL_S * (len(todo) - 1)
        timed_out = False
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL
            )
            stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout, stderr, rc, timed_out = _text(exc.stdout), _text(exc.stderr), None, True
        done = _results(stdout, todo)
        for i, doc in enumerate(done):
            out[start + i] = _outcome(doc)
        start += len(done)
        if start >= len(paths):
            break
        path = paths[start]  # the model the process was on when it stopped
        if timed_out:
            out[start] = ModelFileError(f"{path}: loading and invoking it took over {timeout:.0f} s")
        elif rc is not None and rc < 0:
            out[start] = ModelFileError(
                f"{path} crashed the TFLite interpreter ({_signal_name(-rc)}) while loading or running it",
                hint="the file is corrupt or made for another runtime; re-export it",
            )
        else:  # it stopped without a word on this model (no interpreter, a broken install): all fail
            err = _error(rc, _error_line(stderr) or f"the model check exited with code {rc}")
            for i in range(start, len(paths)):
                out[i] = err
            break
        start += 1
    return out  # type: ignore[return-value]


def probe(path: str | Path, *, python: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """One model's probe: its description (io, runtime), or the error raised."""
    (res,) = probe_many([path], python=python, timeout=timeout)
    if isinstance(res, EdgekitError):
        raise res
    return res


def check_model(path: str | Path, *, trusted: bool = False) -> dict | None:
    """Structural check always; the subprocess probe unless the model is trusted (checksums verified)."""
    check_structure(path)
    return None if trusted else probe(path)


def load_models(
    sources: list[str | Path | bytes], *, threads: int | None = None, names: list[str] | None = None
) -> list[edgelib.Model | EdgekitError]:
    """Each model (a path, or bytes a converter made) checked, probed and then loaded in this process;
    the error instead for one that fails. Bytes already probed in this process are not probed again."""
    names = names or [str(s) if not isinstance(s, bytes) else "the converted model" for s in sources]
    datas: list[bytes | EdgekitError] = []
    for src, name in zip(sources, names, strict=True):
        try:
            data = src if isinstance(src, bytes) else check_structure(src)
            edgelib.check_tflite_bytes(data, name)
            datas.append(data)
        except edgelib.ModelFailure as exc:
            datas.append(ModelFileError(str(exc)))
        except EdgekitError as exc:
            datas.append(exc)
    shas = [hashlib.sha256(d).hexdigest() if isinstance(d, bytes) else None for d in datas]
    todo = sorted({s for s in shas if s is not None and s not in _PROBED})
    if todo:
        with tempfile.TemporaryDirectory(prefix="edgekit-probe-") as tmp:
            files = []
            for sha in todo:
                data = next(d for d, s in zip(datas, shas, strict=True) if s == sha)
                files.append(Path(tmp) / f"{sha[:16]}.tflite")
                files[-1].write_bytes(data)
            for sha, f, res in zip(todo, files, probe_many(files), strict=True):
                _PROBED[sha] = _renamed(res, str(f), None)
    out: list[edgelib.Model | EdgekitError] = []
    for data, sha, name in zip(datas, shas, names, strict=True):
        if not isinstance(data, bytes):
            out.append(data)
            continue
        res = _PROBED[sha]
        if isinstance(res, EdgekitError):
            out.append(_renamed(res, None, name))
            continue
        try:
            out.append(edgelib.Model(data, threads=threads))
        except Exception as exc:
            out.append(ModelFileError(f"{name}: the interpreter cannot load it ({edgelib._one_line(exc)})"))
    return out


def load_model(source: str | Path | bytes, *, threads: int | None = None, name: str | None = None):
    """One model through load_models: an edgelib.Model, or the error raised."""
    (res,) = load_models([source], threads=threads, names=[name] if name else None)
    if isinstance(res, EdgekitError):
        raise res
    return res


def predict_checked(model: edgelib.Model, x, name: str):
    """model.predict(x) with an invoke failure or a NaN/Inf output as ModelFileError (one line)."""
    import numpy as np

    try:
        out = model.predict(x)
    except Exception as exc:
        raise ModelFileError(f"{name}: invoke failed ({edgelib._one_line(exc)})") from None
    bad = int((~np.isfinite(out.reshape(len(out), -1))).any(axis=1).sum()) if out.size else 0
    if bad:
        raise ModelFileError(
            f"{name} outputs NaN or Inf on {bad} of {len(out)} images: its accuracy would mean nothing",
            hint="the model is broken; re-export or retrain it",
        )
    return out


def _renamed(res, tmp_name: str | None, name: str | None):
    """Probe errors for bytes name a temporary file: keep a placeholder, then the caller's name."""
    if not isinstance(res, EdgekitError):
        return res
    if tmp_name is not None:
        return type(res)(res.message.replace(tmp_name, "{model}"), hint=res.hint)
    return type(res)(res.message.replace("{model}", name or "the model"), hint=res.hint)


def _results(stdout: str, todo: list[str]) -> list[dict]:
    """The probe's JSON lines, in order, for the models it finished."""
    docs = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if len(docs) < len(todo) and doc.get("path") == todo[len(docs)]:
                docs.append(doc)
    return docs


def _outcome(doc: dict) -> dict | EdgekitError:
    if "error" in doc:
        return _error(doc.get("exit_code"), str(doc["error"]))
    return doc


def _error(rc, message: str) -> EdgekitError:
    if rc == 8:
        return DependencyError(message)
    if rc == 3:
        return InputDataError(message)
    return ModelFileError(message)


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else (v or "")


def _error_line(stderr: str) -> str | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith("error: "):
            return line[len("error: ") :].strip()
    return None


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
