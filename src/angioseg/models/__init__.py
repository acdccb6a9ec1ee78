"""Network architectures."""

from angioseg.models.unet import UNet, UNetDecoder, UNetEncoder, build_model

__all__ = ["UNet", "UNetDecoder", "UNetEncoder", "build_model"]
