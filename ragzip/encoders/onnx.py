"""ONNX Runtime as the CPU backend of ragzip's MiniLM encoders (query and sentence embedding,
the ``sentence`` and ``token`` classifiers), in one place.

A torch module is exported once, on first use, from the weights ragzip ships (no hub), into
the model cache (``cache_dir()/onnx``), named by a digest of those weights, so a changed
artefact is exported anew; ``int8`` graphs get dynamic int8 quantisation of their matrix
products, weights per output channel. A graph runs at the thread count torch has when it
runs (set by the entry point), idle threads asleep (a proxy must not spin cores it leaves).

Which backend runs is chosen per CPU like :func:`ragzip.encoders.embedding.resolve_precision`
(:func:`resolve_backend`): where the CPU multiplies bfloat16 matrices on AMX tiles, torch under
bfloat16 autocast is already fast; elsewhere ONNX Runtime is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ragzip.core.errors import ConfigError, MissingDependencyError, ModelError

logger = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
"""``"onnx"`` runs float32 graphs, ``"onnx-int8"`` int8 ones; ``"auto"`` resolves per device
and CPU (:func:`resolve_backend`)."""
FixedBackend = Literal["torch", "onnx", "onnx-int8"]
OnnxPrecision = Literal["float32", "int8"]
AUTO_ONNX: FixedBackend = "onnx-int8"
"""What ``"auto"`` picks for an embedder on CPUs without AMX: int8 vectors keep
the rankings (cosine 0.99 to float32, the same answer recall for ``mig``)."""
AUTO_ONNX_CLASSIFIER: FixedBackend = "onnx-int8"
"""What ``"auto"`` picks there for the ``sentence`` and ``token`` classifiers, whose first four
layers are MiniLM's own, frozen in training: int8 weights in those layers only, float32 in the
two trained layers and the head (:func:`auto_int8_layers`). ``sentence``: 0.6 of the float32
graph's time at the answer recall of float32 within half a point at 4x on val and test, where
int8 throughout took 0.5 of it and lost 0.6 points on test; ``token``: 0.78 of the float32
time on an AVX2-only AMD EPYC, the same answer recall at 4x and 8x on val. ``onnx-int8`` asks
for int8 throughout, ``onnx`` for float32."""

BACKEND_ENV = "RAGZIP_BACKEND"
"""Environment variable that fixes what ``"auto"`` resolves to (``torch`` or ``onnx``): to
turn the fast path off, or to run on one CPU what another would pick."""

EXPORT_FORMAT = 2
"""Bumped when the export changes, so graphs exported before are made again (2: the graphs
take no attention mask, :func:`unmasked`)."""
_EXPORT_LOCK = threading.Lock()


def onnx_installed() -> bool:
    """Whether ONNX Runtime and the ``onnx`` package (needed to export) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def check_backend(backend: object) -> None:
    """Raises :class:`ConfigError` unless ``backend`` is one of :data:`Backend`."""
    if backend not in get_args(Backend):
        msg = f"backend must be one of {', '.join(get_args(Backend))}, got {backend!r}"
        raise ConfigError(msg)


def forced_backend() -> str:
    """What :data:`BACKEND_ENV` fixes ``"auto"`` to (``""`` when unset)."""
    return os.environ.get(BACKEND_ENV, "").strip()


def resolve_backend(
    backend: Backend = "auto",
    device: str = "cpu",
    precision: str = "auto",
    *,
    onnx: FixedBackend = AUTO_ONNX,
) -> FixedBackend:
    """``"auto"``: what :data:`BACKEND_ENV` says when set; else torch on CUDA, torch where a
    precision is pinned (``precision`` other than ``"auto"``, or
    :data:`~ragzip.encoders.embedding.PRECISION_ENV` set), torch on CPUs with AMX (its bfloat16
    autocast runs on the tile units there: ``mig`` cold cost 0.14 of one float32 MiniLM pass on
    an Intel Xeon), and ONNX Runtime (an embedder's :data:`AUTO_ONNX`, a classifier's
    :data:`AUTO_ONNX_CLASSIFIER`) on other CPUs when it is installed — those with AVX512-BF16
    but no AMX included: on an AMD EPYC of that kind, one thread, a question's vector took 8.8
    ms under torch's bfloat16 autocast and 1.0 ms on the int8 graph
    (``benchmarks/results/encoder_speed_avx512.md``; per CPU: ``compress_latency_*.md``).
    Other values as they are.

    Raises:
        ConfigError: An unknown backend, or an ONNX one for a device other than the CPU.
        MissingDependencyError: An ONNX backend asked for explicitly but not installed.
    """
    check_backend(backend)
    if backend == "auto":
        forced = forced_backend()
        if forced:
            if forced not in get_args(FixedBackend):
                msg = f"{BACKEND_ENV}={forced!r}: use one of {', '.join(get_args(FixedBackend))}"
                raise ConfigError(msg)
            backend = forced  # type: ignore[assignment]
    if backend == "auto":
        from ragzip.core.machine import amx_cpu
        from ragzip.encoders.embedding import PRECISION_ENV

        pinned = precision != "auto" or bool(os.environ.get(PRECISION_ENV, "").strip())
        if device != "cpu" or pinned or amx_cpu() or not onnx_installed():
            return "torch"
        return onnx
    if backend != "torch":
        if device != "cpu":
            msg = f"the {backend} backend runs on the CPU, not on {device!r}"
            raise ConfigError(msg)
        if not onnx_installed():
            msg = f"the {backend} backend needs onnxruntime and onnx: pip install 'ragzip[models]'"
            raise MissingDependencyError(msg, name="onnxruntime")
    return backend


def auto_int8_layers(backend: Backend, fixed: FixedBackend, n_frozen: int) -> int | None:
    """How many lower layers get int8 weights in a classifier's graph: ``n_frozen`` (MiniLM's
    own layers, frozen in training) where ``backend="auto"`` itself resolved to
    ``"onnx-int8"`` (not :data:`BACKEND_ENV`); ``None`` (every layer at ``fixed``'s precision)
    where ``onnx-int8`` was asked for by name."""
    if backend == "auto" and fixed == "onnx-int8" and not forced_backend():
        return n_frozen
    return None


def onnx_precision(backend: FixedBackend) -> OnnxPrecision:
    """The graph precision an ONNX backend runs."""
    return "int8" if backend == "onnx-int8" else "float32"


def export_key(*parts: str) -> str:
    """A short digest naming one export: the weights' digests, the settings, the format."""
    digest = hashlib.sha256(f"onnx-export-{EXPORT_FORMAT}".encode())
    for part in parts:
        digest.update(b"\x00" + part.encode())
    return digest.hexdigest()[:20]


def _graph_path(name: str, key: str, precision: OnnxPrecision) -> Path:
    from ragzip.core.paths import paths

    return paths().cache / "onnx" / f"{name}-{key}-{precision}.onnx"


def cached_graph(name: str, key: str, precision: OnnxPrecision) -> Path | None:
    """The graph :func:`exported` wrote under these names, when it is there (checked before
    loading a torch model only to export it)."""
    path = _graph_path(name, key, precision)
    return path if path.is_file() else None


def exported(
    module: Any,
    example: Mapping[str, Any],
    *,
    outputs: Sequence[str],
    name: str,
    key: str,
    precision: OnnxPrecision = "float32",
    select: Callable[[Any], Any] | None = None,
    int8_layers: int | None = None,
) -> Path:
    """The ONNX graph of ``module`` (called with ``example`` as keyword tensors, batch and
    length dynamic; ``select`` picks the output tensor from what it returns), exported into
    the cache when it is not there yet. An ``int8`` graph gets int8 weights in every matrix
    product, or with ``int8_layers=n`` only in those of encoder layers ``0 … n-1`` (name the
    choice in ``key``).

    The graph is written beside its final name and renamed into place, so processes racing to
    export never read half a file.

    Raises:
        ModelError: The export failed or the cache cannot be written.
    """
    final = _graph_path(name, key, precision)
    folder = final.parent
    if final.is_file():
        return final
    with _EXPORT_LOCK:
        if final.is_file():
            return final
        logger.info("exporting %s to ONNX (%s) in %s (one time)", name, precision, folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=folder) as tmp:
                plain = Path(tmp) / "model.onnx"
                _export(module, example, outputs, plain, select)
                if precision == "int8":
                    quantized = Path(tmp) / "model-int8.onnx"
                    _quantize(plain, quantized, int8_layers)
                    plain = quantized
                os.replace(plain, final)
        except (OSError, RuntimeError, ValueError) as exc:
            msg = f"cannot export {name} to ONNX under {folder}: {exc}"
            raise ModelError(msg) from exc
    return final


def classifier_graph(
    module: Any,
    *,
    name: str,
    digests: Sequence[str],
    backend: FixedBackend,
    inputs: Sequence[str],
    select: Callable[[Any], Any] | None = None,
    int8_layers: int | None = None,
) -> OnnxModel:
    """A classifier over MiniLM as an ONNX graph at ``backend``'s precision, exported once per
    set of weight ``digests`` (:func:`exported`): traced on a small batch of ``inputs`` (token
    type ids zeros, every other input ones), logits out. ``int8_layers`` (with ``onnx-int8``):
    int8 weights in the first that many encoder layers only."""
    import torch

    ids = torch.ones((2, 8), dtype=torch.long)
    example = {k: torch.zeros_like(ids) if k == "token_type_ids" else ids for k in inputs}
    path = exported(
        module,
        example,
        outputs=["logits"],
        name=name,
        key=export_key(*digests, *([] if int8_layers is None else [f"int8 layers {int8_layers}"])),
        precision=onnx_precision(backend),
        select=select,
        int8_layers=int8_layers,
    )
    return OnnxModel(path)


def _export(
    module: Any,
    example: Mapping[str, Any],
    outputs: Sequence[str],
    path: Path,
    select: Callable[[Any], Any] | None,
) -> None:
    import warnings

    import torch

    names = list(example)
    axes = {n: {0: "batch", 1: "length"} for n in names}
    axes.update({o: {0: "batch"} for o in outputs})
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its successor
            torch.onnx.export(
                _keywords(module, names, select),
                tuple(example[n] for n in names),
                str(path),
                input_names=names,
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    finally:
        module.train(was_training)


def _quantize(source: Path, dest: Path, layers: int | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = None
    if layers is not None:  # the products of those layers' weights only
        graph = onnx.load(str(source), load_external_data=False).graph
        weights = {t.name for t in graph.initializer}
        marks = tuple(f"layer.{i}/" for i in range(layers))
        nodes = [
            n.name
            for n in graph.node
            if n.op_type == "MatMul" and n.input[1] in weights and any(m in n.name for m in marks)
        ]

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantiser suggests pre-processing on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(dest),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
        )
    finally:
        quiet.setLevel(level)


def unmasked(model: Any, output: str) -> Any:
    """A ``transformers`` model as a module of ``(input_ids, token_type_ids)`` alone, returning
    its ``output`` (e.g. ``"logits"``): for graphs that read one unpadded input at a time, where
    an attention mask of ones changes nothing and costs time (MiniLM int8 6.82 against 7.60 ms
    per NQ passage without it, one thread)."""
    import torch

    class Unmasked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, token_type_ids: Any) -> Any:
            out = self.model(input_ids=input_ids, token_type_ids=token_type_ids)
            return getattr(out, output)

    return Unmasked()


def _keywords(module: Any, names: Sequence[str], select: Callable[[Any], Any] | None) -> Any:
    """``module`` called with keyword tensors from positional ones (what the exporter traces)."""
    import torch

    class Keywords(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> Any:
            out = self.inner(**dict(zip(names, args, strict=True)))
            return select(out) if select is not None else out

    return Keywords().eval()


class OnnxModel:
    """An ONNX Runtime graph on the CPU: ``run(**arrays)`` → the first output, float32.

    A session's thread count is fixed when it is made, so one is made per count the graph runs
    at: the count torch has when :meth:`run` is called (set by the entry point), unless
    ``threads`` fixes it. A model loaded before its entry point set the count, or run at two
    counts by a benchmark, thus runs at the count in force.

    Args:
        path: The ``.onnx`` graph.
        threads: Intra-op threads; ``None`` follows torch's count.

    Raises:
        ModelError: The graph cannot be loaded.
    """

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        self.path = path
        self.threads = threads
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        session = self.session()  # a graph that cannot be loaded fails here, not at first use
        self.inputs = tuple(i.name for i in session.get_inputs())

    def session(self) -> Any:
        """The ``onnxruntime.InferenceSession`` for the thread count in force."""
        threads = self.threads or _torch_threads()
        session = self._sessions.get(threads)
        if session is None:
            with self._lock:
                session = self._sessions.get(threads)
                if session is None:
                    session = self._sessions[threads] = self._load(threads)
        return session

    def _load(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            msg = f"cannot load the ONNX graph {self.path}: {exc}"
            raise ModelError(msg) from exc

    def run(self, **arrays: np.ndarray) -> np.ndarray:
        """The first output for the named inputs (int64 ids and masks)."""
        feed = {n: np.ascontiguousarray(arrays[n], dtype=np.int64) for n in self.inputs}
        out = self.session().run(None, feed)[0]
        return np.asarray(out, dtype=np.float32)


def _torch_threads() -> int:
    try:
        import torch
    except ModuleNotFoundError:
        return 1
    return max(1, int(torch.get_num_threads()))
