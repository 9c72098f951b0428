from .consistent_supervision_heads import (ConsistentSupervisionRetinaHead,
                                           ConsistentSupervisionRPNHead)

__all__ = ['ConsistentSupervisionRetinaHead', 'ConsistentSupervisionRPNHead']
from .efficientdet_head import EfficientDetSepBNHead  # noqa: E402

__all__ += ['EfficientDetSepBNHead']
