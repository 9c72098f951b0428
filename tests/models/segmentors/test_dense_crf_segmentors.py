"""CRFEncoderDecoder: the CRF switch of any mmseg encoder-decoder."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.layers import DenseCRF
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch
from mmplug_agg.testing.cli import CONFIG_DIR

IMAGE = (40, 56)  # the preprocessor pads to IMAGE itself: no padding to crop


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def demo_model_cfg(crf, test_padding=False):
    cfg = Config.fromfile(str(CONFIG_DIR / 'deeplabv2_crf_r101_cityscapes_512x1024_80k_demo.py'))
    model = copy.deepcopy(cfg.model)
    model.data_preprocessor.size = IMAGE
    if test_padding:
        model.data_preprocessor.test_cfg = dict(size=IMAGE)
    model.crf = crf
    return model


def build(crf, seed=0, test_padding=False):
    torch.manual_seed(seed)
    model = MODEL_REGISTRIES['mmseg'].build(demo_model_cfg(crf, test_padding))
    model.init_weights()
    return model.eval()


def test_crf_switch_keeps_parameter_names_and_training():
    with_crf, plain = build(dict(num_iterations=2)), build(None)
    assert list(with_crf.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(with_crf.state_dict())
    batch = make_seg_batch(2, IMAGE, 5)
    losses = [m.train()(**m.data_preprocessor(batch, True), mode='loss') for m in (with_crf, plain)]
    torch.testing.assert_close(losses[0]['decode.loss_ce'], losses[1]['decode.loss_ce'])


def test_prediction_is_the_crf_of_the_plain_scores():
    crf_args = dict(num_iterations=3)
    model = build(crf_args)
    plain = build(None)
    plain.load_state_dict(model.state_dict())
    batch = make_seg_batch(2, IMAGE, 5, seed=3)
    data = model.data_preprocessor(batch, False)
    metas = [s.metainfo for s in data['data_samples']]
    with torch.no_grad():
        refined = model.inference(data['inputs'], metas)
        scores = plain.inference(data['inputs'], metas)
        images = torch.stack([img.float() for img in batch['inputs']])
        images = images.flip(1)  # the preprocessor turned BGR into RGB
        expected = DenseCRF(**crf_args)(scores, images)
        torch.testing.assert_close(refined.exp(), expected, atol=1e-4, rtol=1e-4)
        predictions = model(**data, mode='predict')
    for sample, probs in zip(predictions, expected):
        torch.testing.assert_close(sample.pred_sem_seg.data[0], probs.argmax(0))


def test_images_from_inputs_inverts_the_normalisation():
    model = build(dict(num_iterations=1))
    batch = make_seg_batch(1, IMAGE, 5)
    data = model.data_preprocessor(batch, False)
    recovered = model.images_from_inputs(data['inputs'])
    torch.testing.assert_close(recovered[0], batch['inputs'][0].float().flip(0),
                               atol=1e-3, rtol=0)


def test_crf_sees_only_the_image_not_the_padding():
    # DeepLab's DenseCRF layer runs on the real image area of the padded blob.
    crf_args = dict(preset='deeplabv2_voc', num_iterations=3)
    model = build(crf_args, test_padding=True)
    plain = build(None, test_padding=True)
    plain.load_state_dict(model.state_dict())
    batch = make_seg_batch(2, (33, 47), 5, seed=1)  # mmseg tests images of one size together
    data = model.data_preprocessor(batch, False)
    metas = [s.metainfo for s in data['data_samples']]
    assert [tuple(m['img_padding_size']) for m in metas] == [(0, 9, 0, 7)] * 2
    with torch.no_grad():
        refined = model.inference(data['inputs'], metas)
        scores = plain.inference(data['inputs'], metas)
    crf = DenseCRF(**crf_args)
    height, width = 33, 47
    for index, image in enumerate(batch['inputs']):
        expected = crf(scores[index:index + 1, :, :height, :width],
                       image[None].float().flip(1))  # the preprocessor turned BGR into RGB
        torch.testing.assert_close(refined[index:index + 1, :, :height, :width].exp(), expected,
                                   atol=1e-4, rtol=1e-4)
        # The padding keeps the plain scores (as log-probabilities); mmseg crops it.
        padding = torch.ones(IMAGE, dtype=torch.bool)
        padding[:height, :width] = False
        torch.testing.assert_close(refined[index][:, padding],
                                   scores[index].log_softmax(0)[:, padding])


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="preset must be one of .*'deeplabv2_voc'"):
        build(dict(preset='deeplab_v2'))
