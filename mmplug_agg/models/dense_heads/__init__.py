from .consistent_supervision_heads import (ConsistentSupervisionRetinaHead,
                                           ConsistentSupervisionRPNHead)

__all__ = ['ConsistentSupervisionRetinaHead', 'ConsistentSupervisionRPNHead']
