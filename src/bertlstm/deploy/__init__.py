"""Putting a trained model to work, whatever its task: prediction and evaluation from files, ONNX export, and
the HTTP server. Each looks the model's task up once, in :mod:`bertlstm.tasks.registry`."""
