"""Model ingest: bundled and torchvision architectures, checkpoints loaded safely."""

from snnconvert.ingest.bundled import models_dir
from snnconvert.ingest.checkpoint import apply_state_dict, load_state_dict_file
from snnconvert.ingest.formats import INGEST_FORMATS, IngestFormat
from snnconvert.ingest.loader import ModelEntry, list_models, load_model
from snnconvert.ingest.types import LoadedModel

__all__ = [
    "INGEST_FORMATS",
    "IngestFormat",
    "LoadedModel",
    "ModelEntry",
    "apply_state_dict",
    "list_models",
    "load_model",
    "load_state_dict_file",
    "models_dir",
]
