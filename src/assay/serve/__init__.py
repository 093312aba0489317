"""Serve: a registered ONNX model version over HTTP with adaptive micro-batching, API keys, Prometheus metrics
and every prediction logged back into the repository as the dataset ``predictions.NAME``. See docs/serving.md.

Needs the ``serve`` extra (fastapi, uvicorn, prometheus-client): ``pip install 'assay[serve]'``.
"""

from assay.errors import BodyInvalid, BodyTooLarge, KeyRefused, NotServable
from assay.serve.app import Served, create_app, load_served
from assay.serve.batching import Batch, Batcher
from assay.serve.keys import KeyInfo, KeyStore
from assay.serve.labels import LabelResult, label, labels_dataset
from assay.serve.log import PredictionLog, dataset_name
from assay.serve.schema import Validator, instance_model

__all__ = [
    "Batch",
    "Batcher",
    "BodyInvalid",
    "BodyTooLarge",
    "KeyInfo",
    "KeyRefused",
    "KeyStore",
    "LabelResult",
    "NotServable",
    "PredictionLog",
    "Served",
    "Validator",
    "create_app",
    "dataset_name",
    "instance_model",
    "label",
    "labels_dataset",
    "load_served",
]
