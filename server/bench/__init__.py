"""`sdxl-breeder bench`: renderer, naive pipeline and end-to-end clients, measured in one run."""
