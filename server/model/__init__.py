"""The models: loading, genomes, blending, scenes and the renderer (the only torch/diffusers code)."""
