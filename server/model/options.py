"""Which model to load, on which device, in which precision: the options every command that loads one shares.

Torch-free, so the CLI, the server's options and the cluster's front end import it without loading
torch; `load` imports the model code only when it is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdxl_breeder.model.loading import LoadedModel

DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")  # loading.DTYPES maps them to torch dtypes
VAES = ("full", "tiny")  # the pipeline's own AutoencoderKL, or AutoencoderTiny (TAESDXL)


@dataclass(frozen=True)
class ModelOptions:
    """`--model`, `--model-config`, `--device` and `--dtype`, as `load_model` takes them."""

    model: str = "auto"
    model_config: str | None = None
    device: str = "auto"
    dtype: str = "auto"

    def load(self, seed: int = 0, **kwargs: Any) -> LoadedModel:
        """The model these options name, on its device; `kwargs` go to `load_model` (vae, channels_last, …)."""
        from sdxl_breeder.model.loading import load_model

        return load_model(self.model, self.device, self.dtype, seed, model_config=self.model_config, **kwargs)
