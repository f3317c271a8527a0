"""MUSHRA listening tests after ITU-R BS.1534-3: prepare stimuli, serve the page, analyse.

design = prepare(Path("refs"), {"ours": Path("decoded")}, Path("test"))
serve(Path("test"))                  # listeners rate at the printed URL
analysis = analyze(Path("test"))     # post-screening, means, 95% CIs, box plot
"""

from codec.eval.mushra.analyze import Analysis, analyze
from codec.eval.mushra.design import MushraError, TestDesign, listener_plan, load_design
from codec.eval.mushra.prepare import prepare
from codec.eval.mushra.server import MushraServer, serve

__all__ = [
    "Analysis",
    "MushraError",
    "MushraServer",
    "TestDesign",
    "analyze",
    "listener_plan",
    "load_design",
    "prepare",
    "serve",
]
