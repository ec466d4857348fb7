from .amfir_recognizer import AMFIRRecognizer
from .fewshot_recognizer import FewShotRecognizer

__all__ = ['AMFIRRecognizer', 'FewShotRecognizer']
