"""The stages of the `short_video` workflow and their models."""
