"""Training on several workers: TF_CONFIG + MultiWorkerMirroredStrategy, with a custom train step.

Keras 3's `fit` under MultiWorkerMirroredStrategy fails on TF 2.21 (a PerReplica value reaches a
Tensor conversion), so the workers run their own loop: `strategy.run` of a GradientTape step whose
loss is `tf.nn.compute_average_loss` over the global batch, on `experimental_distribute_dataset`. The
Keras callbacks (checkpoints, early stopping, history, progress) are driven by hand with the same
logs `fit` would give them, so the rest of `edgekit train` (BatchNorm recalibration, the run folder,
--resume) is the same for one worker or many. Every worker evaluates the whole validation set
locally with the same weights, so early stopping and "best" agree everywhere and no worker waits in a
collective for one that stopped.

Only the chief writes the run folder; the other workers write their checkpoints under a backup
folder of their own (`worker_dir`), which is what tf.distribute expects and what --resume reads.

`launch_local` is `edgekit train --workers N`: N processes on this machine, free loopback ports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgekit.errors import DeviceError, InputDataError, UsageError

# A collective that waits longer than this for a lost worker fails instead of hanging
# (EDGEKIT_COLLECTIVE_TIMEOUT overrides: a slow shared network may need more).
COLLECTIVE_TIMEOUT_S = 60


def collective_timeout_s() -> float:
    return float(os.environ.get("EDGEKIT_COLLECTIVE_TIMEOUT") or COLLECTIVE_TIMEOUT_S)


# The first step also traces the function and opens every worker's connections: it gets this long more.
FIRST_STEP_GRACE_S = 300
log = logging.getLogger("edgekit.train")


def _lost_worker(detail: str) -> DeviceError:
    return DeviceError(
        f"a training worker was lost ({detail})",
        hint="start every worker again with --resume: training continues from the last checkpoint",
    )


# What TensorFlow says about a lost peer, somewhere in a multi-line error under "Graph execution error:"
_CAUSES = ("socket closed", "connection reset", "failed to connect", "connection refused", "deadline exceeded",
           "aborted", "unavailable", "cancelled", "timed out", "timeout")  # fmt: skip


def _peer_errors(tf) -> tuple:
    """What TensorFlow raises in a collective whose peer is gone."""
    e = tf.errors
    return (e.UnavailableError, e.DeadlineExceededError, e.CancelledError, e.InternalError, e.AbortedError)


def is_peer_loss(exc: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")  # never imports it: without TensorFlow, nothing was lost
    return tf is not None and isinstance(exc, _peer_errors(tf))


def not_joined(detail: str) -> DeviceError:
    return DeviceError(
        f"not every training worker joined ({detail})",
        hint="start every worker with the same command (all with --resume, or none); a worker's log says why it stopped",
    )


def abandon_startup(exc: BaseException) -> None:
    """A peer lost before the first step: one line (the lost worker's own log has its reason)."""
    _abandon(not_joined(lost_detail(exc.__class__.__name__, str(exc))))


def lost_detail(kind: str, message: str) -> str:
    """`UnavailableError: Socket closed` from TensorFlow's error: the line that names the cause."""
    for line in message.splitlines():
        text = line.strip()
        if text and any(c in text.lower() for c in _CAUSES) and "graph execution error" not in text.lower():
            return f"{kind}: {text[:160]}"
    return kind


def _abandon(exc: DeviceError) -> None:
    """Say what happened in one line and end the process now: after a peer is lost, TensorFlow's
    collective and coordination threads can block a normal exit (and even the collective's own
    timeout) indefinitely. Checkpoints are already on disk; nothing else is pending."""
    log.error("%s: %s", exc.prefix, exc)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe: the exit code still says it
            pass
    os._exit(int(exc.exit_code))


class StepWatchdog:
    """Ends the process with the lost-worker line when no training step finishes in time.

    A collective whose peer died should fail after `timeout_seconds`; on TF 2.21 over loopback it was
    seen to block for good instead, so this bound does not depend on TensorFlow keeping its word."""

    def __init__(self, limit_s: float, first_grace_s: float = FIRST_STEP_GRACE_S,
                 error: Callable[[float], DeviceError] | None = None):  # fmt: skip
        self.limit_s, self.grace_s = float(limit_s), float(first_grace_s)
        self._error = error or (lambda waited: _lost_worker(f"no training step finished in {waited:.0f} s"))
        self._last = time.monotonic()
        self._steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="edgekit-step-watchdog", daemon=True)

    def start(self) -> StepWatchdog:
        self._last = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def __enter__(self) -> StepWatchdog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def step_done(self) -> None:
        self._steps += 1
        self._last = time.monotonic()

    def pause(self):
        """A context in which no step runs (validation, checkpoints): the clock restarts after it."""
        watchdog = self

        class _Paused:
            def __enter__(self):
                watchdog._last = float("inf")

            def __exit__(self, *exc):
                watchdog._last = time.monotonic()

        return _Paused()

    def overdue(self, now: float) -> float | None:
        """Seconds since the last step when past the bound, else None."""
        limit = self.limit_s + (self.grace_s if self._steps == 0 else 0.0)
        waited = now - self._last
        return waited if waited > limit else None

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.limit_s / 4)):
            waited = self.overdue(time.monotonic())
            if waited is not None:
                _abandon(self._error(waited))


def startup_timeout_s() -> float:
    """How long start-up may wait for every worker (EDGEKIT_STARTUP_TIMEOUT overrides)."""
    return float(os.environ.get("EDGEKIT_STARTUP_TIMEOUT") or FIRST_STEP_GRACE_S + 2 * collective_timeout_s())


def startup_watchdog() -> StepWatchdog:
    """Bounds start-up (joining the cluster, creating and syncing variables) until `fit`'s own watchdog
    takes over: a worker that never joins, or failed before joining, ends the others in one line
    instead of leaving them blocked in their first collective."""
    return StepWatchdog(
        startup_timeout_s(),
        first_grace_s=0,
        error=lambda waited: not_joined(f"waited {waited:.0f} s"),
    )


def tf_config() -> dict | None:
    """The parsed TF_CONFIG, or None (one worker)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        cluster, task = cfg["cluster"], cfg["task"]
        workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"TF_CONFIG is not a tf.distribute cluster description ({exc.__class__.__name__}: {exc})",
            hint='e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}',
        ) from None
    if not workers:
        raise UsageError("TF_CONFIG names no workers")
    return cfg


def is_chief(cfg: dict | None) -> bool:
    """The chief writes the run: the `chief` task, else worker 0."""
    if cfg is None:
        return True
    task = cfg["task"]
    if "chief" in cfg["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task["index"]) == 0


def worker_count(cfg: dict | None) -> int:
    if cfg is None:
        return 1
    return len(cfg["cluster"].get("chief", [])) + len(cfg["cluster"].get("worker", []))


def worker_dir(out: Path, cfg: dict) -> Path:
    """Where a non-chief worker keeps its checkpoints: a backup folder of its own, not the user's run
    folder (EDGEKIT_WORKER_DIR, else the user cache), stable across restarts so --resume finds it."""
    base = Path(os.environ.get("EDGEKIT_WORKER_DIR") or Path.home() / ".cache" / "edgekit" / "workers")
    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]
    return base / f"{out.name}-{key}" / f"{cfg['task']['type']}-{cfg['task']['index']}"


def strategy():
    """MultiWorkerMirroredStrategy whose collectives give up on a lost worker instead of hanging."""
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_s())
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _sum_from_first_replica(strategy, vector, first_only: bool):
    """All-reduce SUM of a float64 vector over every replica; with `first_only` only global replica 0
    (the chief's first) contributes, so the result is the chief's vector on every worker."""
    import numpy as np
    import tensorflow as tf

    @tf.function
    def reduce(x):
        def replica_fn(x):
            ctx = tf.distribute.get_replica_context()
            keep = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), x.dtype) if first_only else 1.0
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x * keep)

        return strategy.run(replica_fn, args=(x,))

    out = reduce(tf.constant(np.asarray(vector, np.float64)))
    return np.asarray(strategy.experimental_local_results(out)[0])


def sync_json_from_chief(strategy, payload: dict | None) -> dict:
    """The chief's JSON payload on every worker (the others pass None): two all-reduces, its length,
    then its bytes."""
    import numpy as np

    raw = np.frombuffer(json.dumps(payload).encode(), np.uint8) if payload is not None else np.zeros(0, np.uint8)
    size = int(round(_sum_from_first_replica(strategy, [raw.size], first_only=True)[0]))
    mine = np.zeros(size, np.float64)
    mine[: raw.size] = raw  # the chief's bytes; zeros elsewhere
    data = _sum_from_first_replica(strategy, mine, first_only=True)
    return json.loads(np.rint(data).astype(np.uint8).tobytes().decode())


def fits(variables: list, values: list) -> bool:
    """Whether checkpoint `values` match `variables` one for one, shape for shape."""
    return len(values) == len(variables) and all(
        tuple(v.shape) == tuple(x.shape) for v, x in zip(variables, values, strict=True)
    )


def checkpoint_misfit() -> InputDataError:
    return InputDataError(
        "the run's checkpoint (checkpoints/last.keras) does not fit its model",
        hint="drop --resume and train again into a new -o",
    )


def sync_variables_from_chief(strategy, variables: list, values: list | None) -> None:
    """Assign the chief's `values` (None on the other workers) to `variables` on every worker.

    On --resume this replaces each worker reading its own checkpoint: a worker that was killed may
    have none, or one an epoch behind, and would then train other weights than the chief. Every
    worker first checks that all hold the same variables (count and total size): a worker started
    with another model or other data would otherwise send a collective of another shape and hang."""
    import numpy as np

    count, size = len(variables), sum(int(np.prod(v.shape)) for v in variables)
    misfit = values is not None and not fits(variables, values)
    total = _sum_from_first_replica(strategy, [count, size, count**2, size**2, misfit], first_only=False)
    replicas = strategy.num_replicas_in_sync
    if total[4]:  # decided by every worker alike, so none is left waiting in the next collective
        raise checkpoint_misfit()
    if total[0] ** 2 != replicas * total[2] or total[1] ** 2 != replicas * total[3]:  # not all equal
        raise UsageError(
            f"the workers do not hold the same model ({count} variables, {size} values on this one)",
            hint="start every worker with the same command and the same data",
        )
    flat = np.concatenate([np.asarray(x, np.float64).ravel() for x in values]) if values else np.zeros(size)
    flat = _sum_from_first_replica(strategy, flat, first_only=True)
    offset = 0
    for v in variables:
        n = int(np.prod(v.shape))
        v.assign(flat[offset : offset + n].reshape(tuple(v.shape)).astype(np.dtype(str(v.dtype))))
        offset += n


def fit(model, train_ds, val_ds, *, strategy, epochs: int, initial_epoch: int, steps: int, global_batch: int,
        callbacks: list) -> None:  # fmt: skip
    """What `model.fit(train_ds, validation_data=val_ds, ...)` does, for MultiWorkerMirroredStrategy.

    `model` is compiled (its loss, optimizer and metrics are used); `train_ds` is batched at the
    global batch size and repeats; `val_ds` is evaluated whole on every worker."""
    import keras
    import tensorflow as tf

    loss_fn = model.loss
    loss_fn.reduction = None  # per example: compute_average_loss divides by the global batch
    opt = model.optimizer
    with strategy.scope():
        train_metrics = [keras.metrics.CategoricalAccuracy(name="top1")]
    dist = iter(strategy.experimental_distribute_dataset(train_ds))

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.nn.compute_average_loss(loss_fn(y, logits), global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss  # mixed precision
        grads = tape.gradient(scaled, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        for m in train_metrics:
            m.update_state(y, logits)
        return loss

    @tf.function
    def train_step(it):
        per_replica = strategy.run(replica_step, args=next(it))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    cbs = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs, steps=steps)
    cbs.on_train_begin()
    # a step waits for every worker: one that stopped answering ends the run in one line, bounded
    with StepWatchdog(2 * collective_timeout_s()) as watchdog:
        try:
            for epoch in range(initial_epoch, epochs):
                with watchdog.pause():
                    cbs.on_epoch_begin(epoch)
                for m in train_metrics:
                    m.reset_state()
                total = 0.0
                for _ in range(steps):
                    total += float(train_step(dist))
                    watchdog.step_done()
                logs = {"loss": total / steps, **{m.name: float(m.result()) for m in train_metrics}}
                with watchdog.pause():
                    logs.update(_evaluate(model, val_ds))
                    cbs.on_epoch_end(epoch, logs)
                if model.stop_training:
                    break
        except _peer_errors(tf) as exc:
            _abandon(_lost_worker(lost_detail(exc.__class__.__name__, str(exc))))
    cbs.on_train_end()


def _evaluate(model, val_ds) -> dict:
    """val_loss / val_top1 / val_top5 on the whole validation set, locally (no collectives)."""
    import keras

    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    top1 = keras.metrics.CategoricalAccuracy()
    n_cls = int(model.output_shape[-1])
    top5 = keras.metrics.TopKCategoricalAccuracy(k=min(5, n_cls))
    total, n = 0.0, 0
    for x, y in val_ds:
        logits = model(x, training=False)
        total += float(loss(y, logits)) * int(x.shape[0])
        n += int(x.shape[0])
        top1.update_state(y, logits)
        top5.update_state(y, logits)
    return {"val_loss": total / max(1, n), "val_top1": float(top1.result()), "val_top5": float(top5.result())}


# --------------------------------------------------------------------------- edgekit train --workers N


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def launch_local(n: int, argv: list[str], out: Path, progress: Callable[[str], None]) -> int:
    """Run `edgekit train ARGV` as N workers on this machine; the chief's output is the command's,
    the others' goes to OUT.workers/worker-I.log. Returns the chief's exit code (or the first failure)."""
    if n < 2:
        raise UsageError(f"--workers needs at least 2; received {n}")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    ports = _free_ports(n)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    logs = out.parent / f"{out.name}.workers"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        if len(gpus) >= n:  # one GPU each where there are enough; else all share the CPU
            env["CUDA_VISIBLE_DEVICES"] = str(i)
        elif gpus:
            env["CUDA_VISIBLE_DEVICES"] = ""
        cmd = [sys.executable, "-m", "edgekit", "train", *argv]
        if i == 0:
            procs.append(subprocess.Popen(cmd, env=env))
        else:
            with open(logs / f"worker-{i}.log", "ab") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    progress(f"{n} workers on {', '.join(cluster['worker'])} (other workers' logs: {logs})")
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:  # one worker failed: the others would only wait for their collective timeout
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
                for p in procs:
                    p.wait()
                return int(failed[0])
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise


def multi_host_hint(n: int, argv: list[str]) -> str:
    """How to run the same across hosts: one TF_CONFIG per host, the same command everywhere."""
    import shlex

    hosts = [f"host{i + 1}:12345" for i in range(n)]
    lines = ["on several hosts, start the same command on each with its own task index (0 writes the run):"]
    for i in range(n):
        cfg = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
        lines.append(f"  TF_CONFIG={shlex.quote(cfg)} edgekit train {shlex.join(argv)}")
    return "\n".join(lines)
