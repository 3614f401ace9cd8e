"""Training objectives: cross-entropy, SAT and the noisy-label baselines, each registered as a method.

Importing this package registers every method (see :mod:`selfadapt.objectives.registry`).
"""
from selfadapt.label_issues import LabelIssues
from selfadapt.objectives.adversarial import TRADES, PGDAdversarialTraining
from selfadapt.objectives.base import Batch, LogitLoss, Objective, Progress, StepOutput
from selfadapt.objectives.baselines import (EarlyLearningRegularization, GeneralizedCrossEntropy,
                                            HardBootstrapping, LabelSmoothing, Mixup, SoftBootstrapping,
                                            SymmetricCrossEntropy)
from selfadapt.objectives.coteaching import CoTeaching
from selfadapt.objectives.registry import METHODS, Method, MethodContext, build_objective, get_method, register
from selfadapt.objectives.sat import CrossEntropy, SelfAdaptiveTraining, width_scaled
from selfadapt.objectives.selective import DeepGamblers, SATSelective, SelectiveNet
from selfadapt.objectives.ssl import BYOL, RotationPrediction, SelfSupervisedSAT, SimCLR

__all__ = ["BYOL", "Batch", "CoTeaching", "CrossEntropy", "DeepGamblers", "EarlyLearningRegularization",
           "GeneralizedCrossEntropy", "HardBootstrapping", "LabelIssues", "LabelSmoothing", "LogitLoss", "METHODS",
           "Method", "MethodContext", "Mixup", "Objective", "PGDAdversarialTraining", "Progress", "RotationPrediction",
           "SATSelective", "SelectiveNet", "SelfAdaptiveTraining", "SelfSupervisedSAT", "SimCLR", "SoftBootstrapping",
           "StepOutput", "SymmetricCrossEntropy", "TRADES", "build_objective", "get_method", "register", "width_scaled"]
