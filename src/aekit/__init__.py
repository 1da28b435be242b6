"""aekit: autoencoders in PyTorch, every classic variant behind one API."""

from .checkpoint import load, save
from .data import Dataset, load_dataset
from .data.stream import StreamedDataset, open_stream
from .export import export_onnx
from .errors import AekitError, CheckpointError, ConfigError, DataError, DownloadError, TrainingError
from .models import AEOutput, Architecture, Autoencoder, list_architectures, register_architecture
from .registry import get_model, list_models, register_model
from .training import History, Trainer, fit, seed_everything
from .training.callbacks import Callback, KLWarmup, Loop, Schedule, WeightAverage

__version__ = "0.1.0"

__all__ = [
    "AEOutput",
    "AekitError",
    "Architecture",
    "Autoencoder",
    "Callback",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Dataset",
    "DownloadError",
    "History",
    "KLWarmup",
    "Loop",
    "StreamedDataset",
    "Trainer",
    "TrainingError",
    "WeightAverage",
    "export_onnx",
    "fit",
    "get_model",
    "list_architectures",
    "list_models",
    "load",
    "load_dataset",
    "open_stream",
    "register_architecture",
    "register_model",
    "save",
    "Schedule",
    "seed_everything",
]
