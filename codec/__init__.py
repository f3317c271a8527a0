"""codec: a neural audio codec toolkit.

>>> import codec
>>> model = codec.load()                       # the default pretrained model
>>> codes = model.encode(wav, bitrate=6.0)     # wav: torch [T] at model.sample_rate
>>> audio = model.decode(codes)
>>> codec.encode_file(model, "in.wav", "out.codes", bitrate=6.0)
>>> codec.decode_file(model, "out.codes", "out.wav")
"""

from codec.config import CodecConfig
from codec.errors import CodecError
from codec.inference import decode_file, encode_file
from codec.models.codec import CodecModel
from codec.pretrained import available_models, load

__version__ = "0.1.0"
__all__ = [
    "CodecConfig",
    "CodecError",
    "CodecModel",
    "available_models",
    "decode_file",
    "encode_file",
    "load",
]
