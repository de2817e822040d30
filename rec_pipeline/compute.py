"""Where model code runs: the one place a device setting ("auto", "cpu" or "cuda") becomes a torch device."""

from __future__ import annotations

from typing import Literal

Device = Literal["auto", "cpu", "cuda"]


def resolve_device(device: str) -> str:
    """"auto": a CUDA GPU when one is visible, else the CPU. "cuda" without a visible GPU is an error, not a silent CPU run."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is visible")
    return device


def describe_device(device: str) -> str:
    """The resolved device, saying why when "auto" fell back to the CPU."""
    resolved = resolve_device(device)
    return "cpu (no CUDA device visible)" if resolved == "cpu" and device == "auto" else resolved
