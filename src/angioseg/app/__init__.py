"""The local web app (``angioseg serve``): a FastAPI router over the readers, the segmenter and QCA."""
