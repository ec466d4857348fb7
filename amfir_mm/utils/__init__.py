from .dist import close_distributed

__all__ = ['close_distributed']
