from mmplug_agg.registry import installed_toolboxes
from .bifpn import BiFPN, bifpn_topology
from .hrnetv2p_neck import HRNetV2pNeck

__all__ = ['BiFPN', 'bifpn_topology', 'HRNetV2pNeck']

if 'mmdet' in installed_toolboxes():  # AugFPN extends mmdet's FPN
    from .augfpn import AugFPN, ResidualFeatureAugmentation  # noqa: F401
    __all__ += ['AugFPN', 'ResidualFeatureAugmentation']
from .dlaup_neck import DLAUpNeck  # noqa: E402
__all__ += ['DLAUpNeck']
