"""The torch layer: model and training configs (``config``, torch-free), the encoder-decoder
transformer (``model``), batched constrained decoding (``decoding``), the training loop
(``training``) and process settings for CPU speed (``runtime``).

This ``__init__`` imports nothing, so ``rlm.nn.config`` stays importable without torch.
"""
