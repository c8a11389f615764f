"""Translation: the Translator, folder trees, videos, ONNX/TorchScript export."""
