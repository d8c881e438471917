"""Other runtimes: the encoder (and pair head) exported to ONNX, run by ONNX Runtime."""
