from .dla import DLA, DLA_ARCHS, convert_dla_state_dict

__all__ = ['DLA', 'DLA_ARCHS', 'convert_dla_state_dict']
