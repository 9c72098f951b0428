"""A real photograph without a download, with labels that follow its edges."""
import os
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

# Four colour prototypes (dark, skin, uniform blue, red): the nearest one labels each
# pixel, so the label edges are the photograph's.
PROTOTYPES = ((20.0, 20.0, 40.0), (200.0, 180.0, 170.0), (60.0, 70.0, 130.0),
              (150.0, 40.0, 50.0))


def sample_photo(height: Optional[int] = None,
                 width: Optional[int] = None,
                 scale: int = 1) -> Tuple[Tensor, Tensor]:
    """matplotlib's sample photograph (Grace Hopper, 512 wide, 600 high) and 4 labels.

    Shrunk by ``scale``, then cropped to ``height`` x ``width`` from the top left (or
    enlarged first, bilinearly, where it is smaller than that).

    Returns:
        tuple: ``(1, 3, H, W)`` float64 RGB levels 0..255 and ``(H, W)`` int64
        labels (the nearest of :data:`PROTOTYPES`).
    """
    import matplotlib
    from PIL import Image
    path = os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')
    photo = Image.open(path).convert('RGB')
    photo = photo.resize((photo.width // scale, photo.height // scale), Image.BILINEAR)
    height = photo.height if height is None else height
    width = photo.width if width is None else width
    grow = max(height / photo.height, width / photo.width)
    if grow > 1:
        photo = photo.resize((max(width, round(photo.width * grow)),
                              max(height, round(photo.height * grow))), Image.BILINEAR)
    pixels = np.asarray(photo)[:height, :width]
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).double()[None]
    distance = torch.cdist(image[0].permute(1, 2, 0).reshape(-1, 3),
                           torch.tensor(PROTOTYPES, dtype=torch.float64))
    return image, distance.argmin(1).view(height, width)
