from .fewshot_metric import FewShotAccuracy, auroc, mean_ci95, selection_skill

__all__ = ['FewShotAccuracy', 'mean_ci95', 'auroc', 'selection_skill']
