"""A Transformer prior over a codec's codes: the model (model.py), its bit-exact
integer inference (exact.py), entropy coding and sampling (coding.py, generate.py), and
how it is stored beside its codec (io.py). See docs/prior.md."""
