from .cached_episode_loops import CachedEpisodeTestLoop, CachedEpisodeValLoop

__all__ = ['CachedEpisodeValLoop', 'CachedEpisodeTestLoop']
