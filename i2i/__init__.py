"""i2i: image-to-image translation (Pix2Pix, CycleGAN) — installable, fast, safe."""

__version__ = "0.1.0"
