from .augfpn import AugFPN, ResidualFeatureAugmentation

__all__ = ['AugFPN', 'ResidualFeatureAugmentation']
