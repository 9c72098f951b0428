from .dense_crf_segmentors import CRFCascadeEncoderDecoder, CRFEncoderDecoder, DenseCRFMixin

__all__ = ['CRFCascadeEncoderDecoder', 'CRFEncoderDecoder', 'DenseCRFMixin']
