from .pyramid_features import PyramidFeatures, lateral_features

__all__ = ['PyramidFeatures', 'lateral_features']
