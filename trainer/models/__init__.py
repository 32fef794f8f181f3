"""The anonymiser (paper and lean architectures) and the regulariser / attacker CNN."""

from trainer.models.anonymiser import ARCHES, Anonymiser, build_anonymiser
from trainer.models.classifier import Classifier, build_classifier
from trainer.models.flops import count_flops

__all__ = ["ARCHES", "Anonymiser", "Classifier", "build_anonymiser", "build_classifier", "count_flops"]
