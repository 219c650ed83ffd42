"""What a workflow is: the canvas vocabulary, `Workflow`, the compiler, the map expander,
the registry and the workflows reelflow ships."""
