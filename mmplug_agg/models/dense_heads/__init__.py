from .consistent_supervision_heads import (ConsistentSupervisionRetinaHead,
                                           ConsistentSupervisionRPNHead,
                                           DenseConsistentSupervisionRetinaHead)

__all__ = ['ConsistentSupervisionRetinaHead', 'ConsistentSupervisionRPNHead',
           'DenseConsistentSupervisionRetinaHead']
from .efficientdet_head import EfficientDetSepBNHead  # noqa: E402

__all__ += ['EfficientDetSepBNHead']
