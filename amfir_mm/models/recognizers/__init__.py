from .amfir_recognizer import AMFIRRecognizer
from .episodic_inference import EpisodicInferenceMixin
from .fewshot_recognizer import FewShotRecognizer

__all__ = ['AMFIRRecognizer', 'EpisodicInferenceMixin', 'FewShotRecognizer']
