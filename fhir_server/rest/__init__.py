"""The HTTP door: FastAPI routes that translate requests into interactions, and outcomes back."""
