"""Read a PyTorch state dict (`torch.save` zip format) into numpy arrays without PyTorch.

The file is a zip: `<name>/data.pkl` (a pickle whose tensors point at storages by key) and
`<name>/data/<key>` (each storage's raw little-endian bytes). The unpickler below accepts only the
few globals a state dict needs (OrderedDict, the tensor/parameter rebuild functions, storage types),
so loading a `.pth` can never run code from the file, and torch stays optional.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    pass


class _Storage:
    def __init__(self, dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *_rest):
    arr, dtype = storage
    itemsize = np.dtype(dtype).itemsize
    if not size:
        return np.array(arr[offset])
    return np.lib.stride_tricks.as_strided(
        arr[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()


def _rebuild_parameter(data, *_rest):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(fh)
        self.zf, self.prefix = zf, prefix

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _Storage(_DTYPES[name])
        raise TorchFileError(f"the file needs {module}.{name}, which a plain state dict never does")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {pid!r}")
        kind, key = pid[1], str(pid[2])
        dtype = kind.dtype if isinstance(kind, _Storage) else np.float32
        raw = self.zf.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")), dtype


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """{name: array} from a `.pth`/`.pt` state dict (or a checkpoint holding one as `state_dict`)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise TorchFileError("no data.pkl inside: not a torch.save file")
            prefix = pkl[0].rsplit("/", 1)[0] if "/" in pkl[0] else ""
            order = zf.read(f"{prefix}/byteorder").decode() if f"{prefix}/byteorder" in zf.namelist() else "little"
            if order != "little":
                raise TorchFileError(f"byte order {order!r} is not supported")
            with zf.open(pkl[0]) as fh:
                obj = _Unpickler(fh, zf, prefix).load()
    except zipfile.BadZipFile:
        raise TorchFileError(
            "not a zip-format torch.save file (truncated, or the legacy pre-1.6 format: re-save it with "
            "torch.save(model.state_dict(), PATH))"
        ) from None
    except (EOFError, KeyError, pickle.UnpicklingError, ValueError) as exc:
        if isinstance(exc, TorchFileError):
            raise
        raise TorchFileError(f"cannot read the pickled state dict ({exc.__class__.__name__}: {exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise TorchFileError("the file holds no state dict of tensors")
    # DataParallel checkpoints prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in obj.items()}
