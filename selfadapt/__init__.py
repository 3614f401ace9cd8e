"""selfadapt: self-adaptive training (SAT) for PyTorch.

>>> from selfadapt import SelfAdaptiveTraining
"""
from selfadapt.errors import SelfAdaptError
from selfadapt.indexed import IndexedDataset
from selfadapt.label_errors import LabelIssues
from selfadapt.objectives.sat import SelfAdaptiveTraining, width_scaled
from selfadapt.targets import TargetStore
from selfadapt.version import __version__

__all__ = ["__version__", "IndexedDataset", "LabelIssues", "SelfAdaptError", "SelfAdaptiveTraining", "TargetStore", "width_scaled"]
