"""sample_photo: the offline photograph the CRF tests and benchmark use."""
import torch

from mmplug_agg.testing import sample_photo
from mmplug_agg.testing.photos import PROTOTYPES


def test_full_photo_shrunk_and_labelled_by_the_nearest_prototype():
    image, label = sample_photo(scale=4)
    assert image.shape == (1, 3, 150, 128) and image.dtype == torch.float64
    assert label.shape == (150, 128)
    assert 0 <= image.min() and image.max() <= 255
    # Every pixel's label is its nearest prototype, and the photo uses all four.
    distance = ((image[0].permute(1, 2, 0)[..., None, :] - torch.tensor(PROTOTYPES).double())**2)
    assert torch.equal(label, distance.sum(-1).argmin(-1))
    assert set(label.unique().tolist()) == {0, 1, 2, 3}


def test_crops_from_the_top_left_and_enlarges_beyond_its_size():
    full, _ = sample_photo()
    crop, crop_label = sample_photo(300, 450)
    assert crop.shape == (1, 3, 300, 450) and crop_label.shape == (300, 450)
    assert torch.equal(crop, full[..., :300, :450])
    big, big_label = sample_photo(700, 900)
    assert big.shape == (1, 3, 700, 900) and big_label.shape == (700, 900)
