from .efficientnet_lite import EfficientNetLite, imagenet_weights_path

__all__ = ['EfficientNetLite', 'imagenet_weights_path']
