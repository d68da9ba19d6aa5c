"""Training: pre-training (:mod:`~fourdcontrast.train.pretrain`), its configs, checkpoints and
multi-process helpers."""
