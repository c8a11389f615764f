"""i2i: image-to-image translation (Pix2Pix, CycleGAN) — installable, fast, safe."""

__version__ = "0.1.0"

from i2i.startup import long_lived

with long_lived():
    from i2i.inference import Translator, load_generator
    from i2i.nets import build_discriminator, build_generator
    from i2i.trainer import train

__all__ = ["Translator", "__version__", "build_discriminator", "build_generator", "load_generator", "train"]
