__version__ = '0.1.0'


def _parse_version_info(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in version.split('.'))


version_info = _parse_version_info(__version__)
