"""The `.codes` container (format.py) and, later, entropy coding of its payload.

Depends only on the standard library and NumPy.
"""

from codec.bitstream.format import CodesFile, CodesHeader, read, read_header, write

__all__ = ["CodesFile", "CodesHeader", "read", "read_header", "write"]
