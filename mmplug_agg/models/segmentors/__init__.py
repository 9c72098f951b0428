from .dense_crf_segmentors import CRFCascadeEncoderDecoder, CRFEncoderDecoder, DenseCRFMixin

__all__ = ['CRFCascadeEncoderDecoder', 'CRFEncoderDecoder', 'DenseCRFMixin']
from .shape_adaptor_encoder_decoder import ShapeAdaptorEncoderDecoder  # noqa: E402
__all__ += ['ShapeAdaptorEncoderDecoder']
from .multi_scale_max_fusion import CRFMSCEncoderDecoder, MSCEncoderDecoder  # noqa: E402
__all__ += ['CRFMSCEncoderDecoder', 'MSCEncoderDecoder']
