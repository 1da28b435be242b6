"""aekit: autoencoders in PyTorch, every classic variant behind one API."""

from ._lazy import lazy_names

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

# Each public name's module, imported when the name is first read (``import aekit`` itself imports no torch).
_WHERE = {
    **dict.fromkeys(["load", "save"], ".checkpoint"),
    **dict.fromkeys(["Dataset", "load_dataset"], ".data"),
    **dict.fromkeys(["StreamedDataset", "open_stream"], ".data.stream"),
    "export_onnx": ".export",
    **dict.fromkeys(["AekitError", "CheckpointError", "ConfigError", "DataError", "DownloadError", "TrainingError"], ".errors"),
    **dict.fromkeys(["AEOutput", "Architecture", "Autoencoder", "list_architectures", "register_architecture"], ".models"),
    **dict.fromkeys(["get_model", "list_models", "register_model"], ".registry"),
    **dict.fromkeys(["History", "Trainer", "fit", "seed_everything"], ".training"),
    **dict.fromkeys(["Callback", "KLWarmup", "Loop", "Schedule", "WeightAverage"], ".training.callbacks"),
}
assert set(_WHERE) == set(__all__)
lazy_names(__name__, _WHERE)
