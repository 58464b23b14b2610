"""What every recurrent model here is built from: the shape of a config (shape.py, torch-free),
PyTorch's cells, the bidirectional encoder, embeddings and dropout (layers.py), the carried
state (state.py)."""
