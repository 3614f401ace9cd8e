"""Image classifiers by name; every model takes images in [0, 1] and normalises them itself.

>>> from selfadapt.models import build_model
>>> model = build_model("resnet18", num_classes=10, width=16)
"""
from selfadapt.models.registry import MODELS, Classifier, ModelSpec, Normalize, build_model, model_names, model_width

__all__ = ["MODELS", "Classifier", "ModelSpec", "Normalize", "build_model", "model_names", "model_width"]
