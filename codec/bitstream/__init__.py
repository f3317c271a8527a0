"""The `.codes` container (format.py) and the range coder (rangecoder.py) that an
entropy-coded payload uses.

Depends only on the standard library and NumPy.
"""

from codec.bitstream.format import CodesFile, CodesHeader, read, read_header, write, write_coded

__all__ = ["CodesFile", "CodesHeader", "read", "read_header", "write", "write_coded"]
