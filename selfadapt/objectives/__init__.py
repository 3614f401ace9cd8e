"""Training objectives: cross-entropy, SAT and the noisy-label baselines, each registered as a method.

Each module lists its methods in ``METHODS``; :mod:`selfadapt.objectives.registry` finds them.
"""
from selfadapt.batch import Batch, Progress, StepOutput
from selfadapt.label_errors import LabelIssues
from selfadapt.objectives.adversarial import TRADES, PGDAdversarialTraining
from selfadapt.objectives.base import LogitLoss, Objective
from selfadapt.objectives.baselines import (
    EarlyLearningRegularization,
    GeneralizedCrossEntropy,
    HardBootstrapping,
    LabelSmoothing,
    Mixup,
    SoftBootstrapping,
    SymmetricCrossEntropy,
)
from selfadapt.objectives.coteaching import CoTeaching
from selfadapt.objectives.method import Method, MethodContext
from selfadapt.objectives.registry import build_objective, get_method, methods
from selfadapt.objectives.sat import CrossEntropy, SelfAdaptiveTraining, width_scaled
from selfadapt.objectives.selective import DeepGamblers, SATSelective, SelectiveNet
from selfadapt.objectives.ssl import BYOL, RotationPrediction, SelfSupervisedSAT, SimCLR

__all__ = ["BYOL", "Batch", "CoTeaching", "CrossEntropy", "DeepGamblers", "EarlyLearningRegularization",
           "GeneralizedCrossEntropy", "HardBootstrapping", "LabelIssues", "LabelSmoothing", "LogitLoss",
           "Method", "MethodContext", "Mixup", "Objective", "PGDAdversarialTraining", "Progress", "RotationPrediction",
           "SATSelective", "SelectiveNet", "SelfAdaptiveTraining", "SelfSupervisedSAT", "SimCLR", "SoftBootstrapping",
           "StepOutput", "SymmetricCrossEntropy", "TRADES", "build_objective", "get_method", "methods", "width_scaled"]
