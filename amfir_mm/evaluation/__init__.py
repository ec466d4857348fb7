from .fewshot_metric import FewShotAccuracy, mean_ci95

__all__ = ['FewShotAccuracy', 'mean_ci95']
