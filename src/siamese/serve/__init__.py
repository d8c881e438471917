"""The HTTP service: FastAPI app over a run folder and its gallery."""
