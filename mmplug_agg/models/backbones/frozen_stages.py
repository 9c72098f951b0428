"""``frozen_stages`` and ``norm_eval`` as mmdet's ResNet has them, for our backbones."""
from typing import List

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class FrozenStagesMixin:
    """Freezes ``_frozen_modules()`` (eval mode, no gradient) and, with ``norm_eval``,
    keeps every BN in eval mode while training. A backbone lists what
    ``frozen_stages`` freezes in ``_frozen_modules`` and calls ``_freeze_stages`` once
    its layers are built."""

    frozen_stages: int
    norm_eval: bool

    def _frozen_modules(self) -> List[nn.Module]:
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
