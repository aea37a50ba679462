"""The serving graph as ONNX: export, embed the card, check, and torch-vs-ONNX Runtime parity."""
